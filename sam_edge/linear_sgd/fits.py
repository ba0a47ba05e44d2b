"""Power-law exponents: of the spectrum, of the target, of a loss curve.

* ν and Λ: λ_k ≈ Λ k^(−ν), the least-squares line of log λ_k against log k (slope −ν,
  intercept log Λ);
* κ and K: the target's tail sums S_k = Σ_{l>k} C_l(0) ≈ K k^(−κ), the same way;
* both over the middle of the spectrum, k from N^(1/3) to N^(2/3), rounded (`window`), away
  from the few leading modes and from the finite-N end (the tail sums of N modes fall short of
  the infinite ones by about (k/N)^κ, which still biases a small κ upward: κ = 0.8 at N = 1000
  fits as 0.86, while κ ≥ 1 fits within 3%);
* the predicted loss exponent: L(t) ∝ t^(−ξ) with ξ = min(κ/ν, 2 − 1/ν) (the paper: the signal
  term decays as t^(−κ/ν), the noise the batches feed back as t^(−(2−1/ν)));
* a loss curve's exponent: minus the slope of log L against log t over its last decade,
  t ∈ [T/10, T] (`tail_exponent`).
"""

from typing import NamedTuple, Optional

import numpy as np

MIN_POINTS = 3


class Spectrum(NamedTuple):
  """Fitted ν and κ, the predicted exponent min(κ/ν, 2 − 1/ν), the window [k_lo, k_hi], and the
  fitted constants Λ (`scale`) of λ_k and K (`tail_scale`) of the tail sums."""
  nu: float
  kappa: float
  predicted_exponent: float
  window: tuple[int, int]
  scale: float = np.nan
  tail_scale: float = np.nan


def line(x: np.ndarray, y: np.ndarray) -> Optional[tuple[float, float]]:
  """(slope, intercept) of the least-squares line of log y against log x over the points where
  both are finite and positive, or None with fewer than MIN_POINTS of them."""
  x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
  keep = np.isfinite(x) & np.isfinite(y) & (x > 0) & (y > 0)
  if keep.sum() < MIN_POINTS:
    return None
  slope, intercept = np.polyfit(np.log(x[keep]), np.log(y[keep]), 1)
  return float(slope), float(intercept)


def slope(x: np.ndarray, y: np.ndarray) -> Optional[float]:
  """The slope of `line`, or None."""
  fitted = line(x, y)
  return None if fitted is None else fitted[0]


def window(n: int) -> tuple[int, int]:
  """The fitted k: N^(1/3) to N^(2/3), rounded, widened to at least MIN_POINTS modes within
  1..N−1."""
  lo, hi = round(n ** (1 / 3)), round(n ** (2 / 3))
  if hi - lo + 1 < MIN_POINTS:
    lo, hi = 1, max(1, n - 1)
  return lo, hi


def tail_sums(c0: np.ndarray) -> np.ndarray:
  """S_k = Σ_{l>k} C_l(0) for k = 1..N (S_N = 0)."""
  c0 = np.asarray(c0, dtype=np.float64)
  return np.concatenate([np.cumsum(c0[::-1])[::-1][1:], [0.0]])


def predicted_exponent(nu: float, kappa: float) -> float:
  """ξ = min(κ/ν, 2 − 1/ν) (NaN when ν or κ is)."""
  return float(np.minimum(kappa / nu, 2 - 1 / nu))


def spectrum(eigenvalues: np.ndarray, c0: np.ndarray) -> Spectrum:
  """ν, κ, Λ and K (fitted over `window`) and the predicted exponent; NaN where a fit has too
  few points."""
  lo, hi = window(len(eigenvalues))
  k = np.arange(1, len(eigenvalues) + 1, dtype=np.float64)
  part = slice(lo - 1, hi)
  fitted = [line(k[part], values[part]) for values in (eigenvalues, tail_sums(c0))]
  (nu, scale), (kappa, tail) = ((np.nan, np.nan) if f is None else (-f[0], float(np.exp(f[1])))
                                for f in fitted)
  return Spectrum(nu, kappa, predicted_exponent(nu, kappa), (lo, hi), scale, tail)


def tail_exponent(steps: np.ndarray, loss: np.ndarray) -> Optional[float]:
  """−d log L/d log t over the last decade of `steps` (module doc), or None when fewer than
  MIN_POINTS of its losses are finite and positive."""
  steps = np.asarray(steps, dtype=np.float64)
  last = steps[-1]
  tail = steps >= last / 10
  loss = np.asarray(loss, dtype=np.float64)
  if not np.all(np.isfinite(loss[tail])):
    return None
  s = slope(steps[tail], loss[tail])
  return None if s is None else -s
