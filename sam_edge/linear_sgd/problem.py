"""The problem every regime trains on: a kernel scaled so that λ_max(K̃) = 1, its spectrum, the
initial residual and, for real data, the network the kernel came from.

With N training points, residual d = f(X) − y and loss L = ‖d‖²/(2N), the empirical NTK K of
the network at initialisation is computed once in JAX (`network.kernel`) and eigendecomposed
once. The regimes use K̃ = K/λ_max(K), whose largest eigenvalue is 1: step sizes α are in units
of 1/λ_max, and a sampled step g = (1/b)·(N K̃)[:, B] d[B] is the paper's (1/b)·K[:, B] d[B] with
its K rescaled to λ_max(K/N) = 1. The network itself then trains with the parameter step size
η = α·N/λ_max(K), the step whose first-order effect on the outputs is that kernel step.

In the eigenbasis K̃ = Σ_k λ_k u_k u_kᵀ (λ_1 = 1 ≥ λ_2 ≥ ...), C_k(0) = (u_k·d₀)².

* `synthetic`: λ_k = k^(−ν) and C_k(0) ∝ k^(−κ−1), scaled so that mean_k C_k(0) = 1 (L(0) = ½).
  The regimes that need the matrix K̃ get it in a random orthonormal basis Q (Haar, from the
  key) with d₀ = Q·(s_k √C_k(0)) for random signs s_k; the spectral-diagonal regime needs only
  the spectrum, so without `with_kernel` nothing of size N² is built.
* real data (`mnist`, `cifar10`, `csv`): the standardised inputs and targets of `inputs` and the
  network of `network` (one hidden layer of the given width) on them.
"""

from typing import NamedTuple, Optional

import jax
import jax.numpy as jnp
import numpy as np

from sam_edge.linear_sgd import network


class Problem(NamedTuple):
  """`eigenvalues` λ_k (descending, λ_1 = 1) and `c0` C_k(0) [N]; `kernel` K̃ [N, N] and `d0`
  [N] when a regime needs them; `params`, `x`, `y` and `eta_per_alpha` = N/λ_max(K) for the
  network."""
  eigenvalues: np.ndarray
  c0: np.ndarray
  kernel: Optional[jax.Array] = None
  d0: Optional[jax.Array] = None
  params: Optional[network.Params] = None
  x: Optional[jax.Array] = None
  y: Optional[jax.Array] = None
  eta_per_alpha: float = 1.0

  @property
  def size(self) -> int:
    return len(self.eigenvalues)


def power_law_spectrum(n: int, nu: float, kappa: float) -> tuple[np.ndarray, np.ndarray]:
  """(λ_k = k^(−ν), C_k(0) = k^(−κ−1) scaled to mean 1) for k = 1..n, float64."""
  k = np.arange(1, n + 1, dtype=np.float64)
  c0 = k ** (-kappa - 1.0)
  return k ** -nu, c0 * (n / c0.sum())


def synthetic(n: int, nu: float, kappa: float, key: jax.Array, with_kernel: bool) -> Problem:
  """The synthetic problem with exact power laws (module doc)."""
  eigenvalues, c0 = power_law_spectrum(n, nu, kappa)
  if not with_kernel:
    return Problem(eigenvalues, c0)
  k_basis, k_signs = jax.random.split(key)
  q, r = jnp.linalg.qr(jax.random.normal(k_basis, (n, n), jnp.float64))
  q = q * jnp.sign(jnp.diag(r))                  # Haar-distributed
  signs = jnp.where(jax.random.bernoulli(k_signs, 0.5, (n,)), 1.0, -1.0)
  kernel = (q * eigenvalues) @ q.T
  return Problem(eigenvalues, c0, kernel=(kernel + kernel.T) / 2, d0=q @ (signs * np.sqrt(c0)))


def real(x: np.ndarray, y: np.ndarray, hidden_width: int, key: jax.Array) -> Problem:
  """The problem of a freshly initialised network of `hidden_width` on inputs x [N, D] with
  targets y [N] (module doc)."""
  x, y = jnp.asarray(x, jnp.float64), jnp.asarray(y, jnp.float64)
  params = jax.tree.map(lambda a: a.astype(jnp.float64),
                        network.init(key, x.shape[1], hidden_width))
  return from_network(params, x, y)


def from_network(params: network.Params, x: jax.Array, y: jax.Array) -> Problem:
  """The problem of the network `params` on inputs x [N, D] with targets y [N]: its kernel
  (computed once), scaled to λ_max = 1 and eigendecomposed once."""
  raw = jax.jit(network.kernel)(params, x)
  raw = (raw + raw.T) / 2
  values, vectors = jnp.linalg.eigh(raw)
  top = float(values[-1])
  eigenvalues = np.asarray(values[::-1]) / top
  d0 = jax.jit(network.apply)(params, x) - y
  c0 = np.asarray(vectors[:, ::-1].T @ d0) ** 2
  return Problem(eigenvalues, c0, kernel=raw / top, d0=d0, params=params, x=x, y=y,
                 eta_per_alpha=x.shape[0] / top)
