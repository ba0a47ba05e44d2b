"""When mini-batch heavy ball converges in the linearised regime (the paper's conditions).

With γ = (N−b)/((N−1)b) (`gamma`), eigenvalues λ_k of K̃ and the SD parameter τ, all three must
hold:

* −1 < β < 1;
* αλ_max < 2(1+β)  (the deterministic heavy-ball edge: the top mode alone is stable);
* U(1) = γα(1+β) Σ_k λ_k / D_k < 1, with D_k = 2(1−β²) − αλ_k(1−β) + γτ αλ_k(1+β)
  (the noise the batches inject, summed over the modes, must not feed itself; `u_one`; a
  D_k ≤ 0 makes U(1) infinite).

At b = 1, β = 0 and τ = 1 (γ = 1, D_k = 2) the third reads α < 2/Σ_k λ_k = 2/Tr K̃: for large N
the batch noise sets the edge long before the deterministic 2/λ_max does.

For a fixed β, U(1) increases with α on the α where every D_k > 0 (D_k = a − c_kα with a > 0,
and α/(a − c_kα) increases for either sign of c_k), so the boundary is one α, `u_boundary`:
the smallest α at which U(1) reaches 1 or some D_k reaches 0 (at b = N, where U(1) = 0, that
is the deterministic edge for τ = 1), found by bisection; it is infinite when U(1) stays below 1
for every α.
"""

import numpy as np

BISECTION_STEPS = 80


def gamma(n: int, b: int) -> float:
  """γ = (N−b)/((N−1)b): the variance factor of a batch of b drawn without replacement."""
  return (n - b) / ((n - 1) * b)


def denominators(eigenvalues: np.ndarray, alpha: float, beta: float, g: float, tau: float
                 ) -> np.ndarray:
  """D_k = 2(1−β²) − αλ_k(1−β) + γτ αλ_k(1+β), one per eigenvalue."""
  lam = np.asarray(eigenvalues, dtype=np.float64)
  return 2 * (1 - beta ** 2) - alpha * lam * (1 - beta) + g * tau * alpha * lam * (1 + beta)


def u_one(eigenvalues: np.ndarray, alpha: float, beta: float, g: float, tau: float) -> float:
  """U(1) = γα(1+β) Σ_k λ_k/D_k (module doc); inf when some D_k ≤ 0."""
  lam = np.asarray(eigenvalues, dtype=np.float64)
  d = denominators(lam, alpha, beta, g, tau)
  if np.any(d <= 0):
    return np.inf
  return float(g * alpha * (1 + beta) * np.sum(lam / d))


def edge(eigenvalues: np.ndarray, beta: float) -> float:
  """The deterministic heavy-ball edge: the α with αλ_max = 2(1+β)."""
  return 2 * (1 + beta) / float(np.max(eigenvalues))


def holds(eigenvalues: np.ndarray, alpha: float, beta: float, g: float, tau: float) -> bool:
  """Whether all three conditions hold at (α, β) for this γ and τ."""
  return (-1 < beta < 1 and alpha < edge(eigenvalues, beta)
          and u_one(eigenvalues, alpha, beta, g, tau) < 1)


def u_boundary(eigenvalues: np.ndarray, beta: float, g: float, tau: float) -> float:
  """The α > 0 where U(1) < 1 stops holding at this β (bisection; module doc), inf when it
  never does, NaN outside −1 < β < 1."""
  if not -1 < beta < 1:
    return np.nan
  below = lambda a: u_one(eigenvalues, a, beta, g, tau) < 1
  hi = edge(eigenvalues, beta)
  while below(hi):
    hi *= 2
    if hi > 1e12:
      return np.inf
  lo = 0.0
  for _ in range(BISECTION_STEPS):
    mid = (lo + hi) / 2
    lo, hi = (mid, hi) if below(mid) else (lo, mid)
  return (lo + hi) / 2
