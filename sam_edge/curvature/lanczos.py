"""Lanczos with full reorthogonalisation for the top-k eigenpairs of a symmetric operator.

On the operator v ↦ Hv of raveled vectors (`hvp.operator`): the top-k largest *algebraic* Ritz
values of T_j = V_jᵀ H V_j, their Ritz vectors y_i = V_j s_i and residuals
||H y_i − θ_i y_i|| = |β_j s_{j,i}|. It stops once every requested residual is at most
`tol · max_i |θ_i|` (or after `max_steps` HVPs). A breakdown (β_j ≈ 0: an invariant subspace)
restarts from a random vector orthogonal to the basis, so an exact eigenvector as the start
vector, or a low-rank H, cannot end it early with the wrong eigenvalues.

`lanczos` runs `lanczos_start`, `lanczos_step` in a `lax.while_loop` and `lanczos_finish`; a
host can drive the same steps itself (`eigensolvers.compiled`).
"""

from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp

MatVec = Callable[[jax.Array], jax.Array]


class EigenResult(NamedTuple):
  """Top-k eigenpairs of a symmetric operator, largest first."""
  eigenvalues: jax.Array   # [k]
  vectors: jax.Array       # [k, n] unit eigenvector estimates (raveled)
  residuals: jax.Array     # [k] ||H y_i − θ_i y_i||
  num_matvecs: jax.Array   # int32 []: HVPs used


def start_vector(v0: jax.Array, key: jax.Array) -> jax.Array:
  """v0/||v0||, or a random unit vector when v0 is zero."""
  norm = jnp.linalg.norm(v0)
  random = jax.random.normal(key, v0.shape, v0.dtype)
  v = jnp.where(norm > 0, v0, random)
  return v / jnp.linalg.norm(v)


def _orthogonalize(basis: jax.Array, w: jax.Array) -> jax.Array:
  """w minus its projection on the rows of `basis` (zero rows are ignored); twice, for stability."""
  for _ in range(2):
    w = w - basis.T @ (basis @ w)
  return w


def _tridiagonal_top_k(alphas: jax.Array, betas: jax.Array, start: jax.Array, size: jax.Array,
                       k: int) -> tuple[jax.Array, jax.Array]:
  """Top-k eigenpairs of the block [start, size) of tridiag(β, α, β) (an m x m padded matrix).

  Entries outside the block are replaced by a diagonal below the block's Gershgorin lower bound,
  so the padded matrix keeps the block's eigenvalues and every padding eigenvalue sorts after
  them. Returns eigenvalues [k] (descending) and eigenvectors [m, k].
  """
  m = alphas.shape[0]
  idx = jnp.arange(m)
  used = (idx >= start) & (idx < size)
  off = jnp.where((idx[:-1] >= start) & (idx[:-1] < size - 1), betas[:m - 1], 0.0)
  alphas = jnp.where(used, alphas, 0.0)
  radius = jnp.abs(jnp.pad(off, (1, 0))) + jnp.abs(jnp.pad(off, (0, 1)))
  lower = jnp.min(jnp.where(used, alphas - radius, jnp.inf))
  fill = lower - 1.0 - jnp.abs(lower)
  diag = jnp.where(used, alphas, fill)
  t = jnp.diag(diag) + jnp.diag(off, 1) + jnp.diag(off, -1)
  values, vectors = jnp.linalg.eigh(t)          # ascending
  return values[::-1][:k], vectors[:, ::-1][:, :k]


def lanczos_iteration(matvec: MatVec, basis: jax.Array, j: jax.Array, scale: jax.Array,
                      key: jax.Array, breakdown_rtol: float
                      ) -> tuple[jax.Array, jax.Array, jax.Array, jax.Array]:
  """One Lanczos step with full reorthogonalisation from the unit vector basis[j]:
  w = H v_j, α_j = v_jᵀ w, w ⊥ every row of `basis`, β_j = ||w||, v_{j+1} = w/β_j.

  A breakdown, β_j ≤ breakdown_rtol · max(scale, |α_j|) (`scale`: the largest |α| so far; the
  Krylov space is invariant), sets β_j = 0 and continues from a random vector (drawn from `key`)
  orthogonal to the basis. Returns (α_j, β_j, v_{j+1}, breakdown).
  """
  n, dtype = basis.shape[1], basis.dtype
  tiny = jnp.finfo(dtype).tiny
  v = basis[j]
  w = matvec(v)
  alpha = jnp.vdot(v, w)
  w = _orthogonalize(basis, w)
  beta = jnp.linalg.norm(w)
  breakdown = beta <= breakdown_rtol * jnp.maximum(jnp.maximum(scale, jnp.abs(alpha)), tiny)
  restart = _orthogonalize(basis, jax.random.normal(key, (n,), dtype))
  nxt = jnp.where(breakdown, restart / jnp.maximum(jnp.linalg.norm(restart), tiny),
                  w / jnp.where(breakdown, 1.0, beta))
  return alpha, jnp.where(breakdown, 0.0, beta), nxt, breakdown


class LanczosState(NamedTuple):
  j: jax.Array          # steps done (= HVPs used)
  basis: jax.Array      # [m + 1, n]
  alphas: jax.Array     # [m]
  betas: jax.Array      # [m]
  block_start: jax.Array  # first step of the current Krylov block (after the last restart)
  done: jax.Array       # bool
  key: jax.Array


def lanczos_start(v0: jax.Array, key: jax.Array, *, k: int, max_steps: int) -> LanczosState:
  """The state before the first Lanczos step (see `lanczos`)."""
  n = v0.shape[0]
  m = min(max_steps, n)
  if not 1 <= k <= m:
    raise ValueError(f"need 1 <= k <= min(max_steps, n) = {m}, got k = {k}")
  dtype = v0.dtype
  key, start_key = jax.random.split(key)
  basis = jnp.zeros((m + 1, n), dtype).at[0].set(start_vector(v0, start_key))
  zero = jnp.zeros([], jnp.int32)
  return LanczosState(zero, basis, jnp.zeros(m, dtype), jnp.zeros(m, dtype), zero,
                       jnp.zeros([], bool), key)


def lanczos_step(matvec: MatVec, s: LanczosState, *, k: int, tol: float,
                 min_steps: int = 1) -> LanczosState:
  """One Lanczos step (one HVP) with full reorthogonalisation; sets `done` (see `lanczos`)."""
  m = s.alphas.shape[0]
  key, restart_key = jax.random.split(s.key)
  # β this small means an invariant subspace; kept well below `tol`, so that zeroing β never
  # reports a residual as 0 that the tolerance would have counted.
  alpha, beta, nxt, breakdown = lanczos_iteration(
      matvec, s.basis, s.j, jnp.max(jnp.abs(s.alphas)), restart_key,
      min(1e3 * float(jnp.finfo(s.basis.dtype).eps), 1e-2 * tol))
  alphas = s.alphas.at[s.j].set(alpha)
  betas = s.betas.at[s.j].set(beta)
  j = s.j + 1
  values, vectors = _tridiagonal_top_k(alphas, betas, 0, j, k)
  residuals = jnp.abs(beta * vectors[j - 1])
  # After a restart, the new block's own top Ritz pair must converge as well: otherwise an
  # exact (non-top) eigenvector found first would look converged with residual 0.
  _, block_vectors = _tridiagonal_top_k(alphas, betas, s.block_start, j, 1)
  block_residual = jnp.abs(beta * block_vectors[j - 1, 0])
  threshold = tol * jnp.max(jnp.abs(values))
  # A breakdown of the first block may come from an eigenvector given as v0, which says
  # nothing about the top of the spectrum; one of a random restart block is an invariant
  # subspace of the remaining operator (e.g. a low-rank H) and may end the run.
  converged = ((j >= jnp.maximum(k, min_steps)) & ~(breakdown & (s.block_start == 0))
               & jnp.all(residuals <= threshold) & (block_residual <= threshold))
  done = converged | (j >= m)
  block_start = jnp.where(breakdown, j, s.block_start)
  return LanczosState(j, s.basis.at[j].set(nxt), alphas, betas, block_start, done, key)


def lanczos_finish(s: LanczosState, *, k: int) -> EigenResult:
  """The top-k Ritz pairs and their residuals of a finished (or stopped) Lanczos state."""
  m = s.alphas.shape[0]
  values, vectors = _tridiagonal_top_k(s.alphas, s.betas, 0, s.j, k)
  last_beta = s.betas[s.j - 1]
  residuals = jnp.abs(last_beta * vectors[s.j - 1])
  ritz = vectors.T @ s.basis[:m]                          # [k, n]
  ritz = ritz / jnp.linalg.norm(ritz, axis=1, keepdims=True)
  return EigenResult(values, ritz, residuals, s.j)


def power_step(s: LanczosState) -> jax.Array:
  """H y/||H y|| for the top Ritz vector y = V s of a Lanczos state, at no HVP: with full
  reorthogonalisation H V_j = V_j T_j + β_j v_{j+1} e_jᵀ, so H y = θ y + β_j s_j v_{j+1}."""
  m = s.alphas.shape[0]
  values, vectors = _tridiagonal_top_k(s.alphas, s.betas, 0, s.j, 1)
  y = vectors[:, 0] @ s.basis[:m]
  hy = values[0] * y + s.betas[s.j - 1] * vectors[s.j - 1, 0] * s.basis[s.j]
  return hy / jnp.maximum(jnp.linalg.norm(hy), jnp.finfo(hy.dtype).tiny)


def lanczos(matvec: MatVec, v0: jax.Array, key: jax.Array, *, k: int, max_steps: int,
            tol: float, min_steps: int = 1) -> EigenResult:
  """Top-k algebraic eigenpairs of the symmetric operator `matvec` by Lanczos (see module doc):
  `lanczos_start`, `lanczos_step` in a `lax.while_loop` until done, `lanczos_finish`.

  `matvec` is v ↦ Hv on vectors of shape [n] and `v0` the start vector [n] (a warm start); a zero
  `v0` means a random start drawn from `key`, the PRNG key also used for restarts after
  breakdown. It finds `k` eigenpairs, 1 <= k <= max_steps, taking at most `max_steps` Lanczos
  steps (= HVPs; also capped at n) and never fewer than `min_steps`, and stops once every
  residual ||H y_i − θ_i y_i|| <= tol · max|θ|.
  """
  init = lanczos_start(v0, key, k=k, max_steps=max_steps)
  final = jax.lax.while_loop(
      lambda s: ~s.done, lambda s: lanczos_step(matvec, s, k=k, tol=tol, min_steps=min_steps),
      init)
  return lanczos_finish(final, k=k)
