"""The loss the spectral-diagonal (SD) regime is predicted to follow at large t: the paper's
asymptotic law, with its constants.

Write S(t) = Σ_k C_k(t) = 2N·L(t), α_eff = α/(1−β) and s = 2α_eff·t. The SD step of mode k is
linear in (C_k, J_k, P_k) except for the noise it receives from all the modes, γ(αλ_k)²·S(t),
added to C_k, J_k and P_k alike. So S obeys a renewal equation

    S(t) = S₀(t) + Σ_{r<t} U_{t−1−r} S(r),

where S₀(t) is the loss the modes reach without that coupling (each mode's own τ term kept) and
U_m = γ(αλ_k)² summed over the modes of what one unit of injected noise leaves in C_k after m
steps, with Σ_m U_m = U(1) (`conditions.u_one`). For power-law sequences the solution is
S(t) ≈ S₀(t)/(1 − U(1)) + U_t·V/(1 − U(1))², with V = Σ_t S₀(t). At large t only modes with
αλ_k ≪ 1 remain, and there heavy ball is gradient descent with the step α_eff (one injected unit
of noise carries on through the momentum to 1/(1−β) of displacement), so with power laws
λ_k ≈ Λ k^(−ν) and tail sums Σ_{l>k} C_l(0) ≈ K k^(−κ), ζ = κ/ν:

    S₀(t) ≈ Σ_k C_k(0) e^(−sλ_k) ≈ K Λ^(−ζ) Γ(ζ+1) s^(−ζ)
    U_t   ≈ γ α_eff² Σ_k λ_k² e^(−sλ_k) ≈ γ α_eff² (Λ^(1/ν)/ν) Γ(2−1/ν) s^(−(2−1/ν))

and

    L(t) ≈ [K Λ^(−ζ) Γ(ζ+1) s^(−ζ) / (1 − U(1))
            + γ α_eff² (Λ^(1/ν)/ν) Γ(2−1/ν) s^(−(2−1/ν)) · V / (1 − U(1))²] / (2N):

the signal term decays as t^(−κ/ν), the noise term as t^(−(2−1/ν)), and the slower one wins
(`fits.predicted_exponent`). V is exact for the finite spectrum (summing the geometric series
of each mode's 3×3 step, with D_k of `conditions`):

    V = Σ_k C_k(0) (2αβλ_k + (1−β)(1−β²)) / (αλ_k D_k).

These are the paper's notebook's `loss_asymptotic_clean` (the signal term, Γ(ζ+1)(2α_eff)^(−ζ)
/(1 − U)) and `loss_asymptotic_noisy` (the noise term, with its `compute_V`, there at τ = 1).
The law holds while the finite spectrum looks infinite: once s·λ_N reaches about 1, every mode
has been learnt and the loss falls faster (`benchmarks/power_law_asymptotics.py`). It needs
U(1) < 1 (the batch noise does not feed itself); otherwise there is no law (NaN).
"""

import math
from typing import NamedTuple

import numpy as np

from sam_edge.linear_sgd import conditions, fits


class Law(NamedTuple):
  """L(t) ≈ signal·t^(−signal_exponent) + noise·t^(−noise_exponent)."""
  signal: float
  signal_exponent: float
  noise: float
  noise_exponent: float

  def at(self, steps: np.ndarray) -> np.ndarray:
    """The law at `steps` (NaN at t ≤ 0 and wherever a constant is)."""
    t = np.asarray(steps, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
      value = self.signal * t ** -self.signal_exponent + self.noise * t ** -self.noise_exponent
    return np.where(t > 0, value, np.nan)

  def label(self) -> str:
    """"a·t^-x + b·t^-y", the constants to three figures."""
    return (f"{self.signal:.3g}·t^-{self.signal_exponent:.3g} + "
            f"{self.noise:.3g}·t^-{self.noise_exponent:.3g}")


def v_sum(eigenvalues: np.ndarray, c0: np.ndarray, alpha: float, beta: float, g: float,
          tau: float) -> float:
  """V = Σ_t S₀(t) (module doc); inf when some D_k ≤ 0."""
  lam = np.asarray(eigenvalues, dtype=np.float64)
  d = conditions.denominators(lam, alpha, beta, g, tau)
  if np.any(d <= 0) or np.any(lam <= 0):
    return math.inf
  return float(np.sum(c0 * (2 * alpha * beta * lam + (1 - beta) * (1 - beta ** 2))
                      / (alpha * lam * d)))


def law(eigenvalues: np.ndarray, c0: np.ndarray, spectrum: fits.Spectrum, alpha: float,
        beta: float, g: float, tau: float) -> Law:
  """The law of the SD run (α, β, γ, τ) on this spectrum, with ν, κ, Λ and K fitted
  (`spectrum`); NaN constants when U(1) ≥ 1, β is outside (−1, 1) or a fit failed."""
  n = len(eigenvalues)
  nu, kappa, scale, tail = spectrum.nu, spectrum.kappa, spectrum.scale, spectrum.tail_scale
  u = conditions.u_one(eigenvalues, alpha, beta, g, tau) if -1 < beta < 1 else math.inf
  fitted = all(math.isfinite(x) for x in (nu, kappa, scale, tail)) and nu > 0.5
  if not (u < 1 and fitted):
    return Law(math.nan, math.nan, math.nan, math.nan)
  effective = alpha / (1 - beta)
  zeta, xi = kappa / nu, 2 - 1 / nu
  signal = (tail * scale ** -zeta * math.gamma(zeta + 1) * (2 * effective) ** -zeta / (1 - u))
  noise = (g * effective ** 2 * scale ** (1 / nu) / nu * math.gamma(xi) * (2 * effective) ** -xi
           * v_sum(eigenvalues, c0, alpha, beta, g, tau) / (1 - u) ** 2)
  return Law(signal / (2 * n), zeta, noise / (2 * n), xi)
