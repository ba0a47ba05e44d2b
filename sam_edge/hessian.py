"""Hessian-vector products and eigen-solvers over parameter pytrees.

HVPs (H = ∇²L(w) on one batch):
  * exact, forward-over-reverse:   Hv = d/dt ∇L(w + t v) |_{t=0}  = jax.jvp(∇L, (w,), (v,))[1]
  * central finite difference (the reference's, kept for comparison, step h = 1e-3):
                                   Hv ≈ (∇L(w + h v) − ∇L(w − h v)) / (2h)

Solvers work on the raveled parameter vector (`jax.flatten_util.ravel_pytree`):
  * `lanczos`: Lanczos with full reorthogonalisation; the top-k largest *algebraic* Ritz values
    of T_j = V_jᵀ H V_j, their Ritz vectors y_i = V_j s_i and residuals
    ||H y_i − θ_i y_i|| = |β_j s_{j,i}|. It stops once every requested residual is at most
    `tol · max_i |θ_i|` (or after `max_steps` HVPs). A breakdown (β_j ≈ 0: an invariant subspace)
    restarts from a random vector orthogonal to the basis, so an exact eigenvector as the start
    vector, or a low-rank H, cannot end it early with the wrong eigenvalues.
  * `power_iteration` / `subspace_iteration`: the reference's methods (stop when the estimated
    norm changes by less than `rtol` relatively, at most `max_iters` iterations; magnitudes only).
"""

import functools
from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
from jax.flatten_util import ravel_pytree

PyTree = Any
LossFn = Callable[[PyTree, PyTree], jax.Array]
MatVec = Callable[[jax.Array], jax.Array]

FINITE_DIFFERENCE_STEP = 1e-3


def exact_hvp(loss_fn: LossFn, params: PyTree, batch: PyTree, v: PyTree) -> PyTree:
  """Hv by forward-over-reverse differentiation: jvp(∇L, (w,), (v,))."""
  grad_fn = lambda p: jax.grad(loss_fn)(p, batch)
  return jax.jvp(grad_fn, (params,), (v,))[1]


def finite_difference_hvp(loss_fn: LossFn, params: PyTree, batch: PyTree, v: PyTree,
                          step: float = FINITE_DIFFERENCE_STEP) -> PyTree:
  """Hv ≈ (∇L(w + h v) − ∇L(w − h v)) / (2h), h = `step` (the reference's approximation)."""
  grad_fn = lambda p: jax.grad(loss_fn)(p, batch)
  shift = lambda sign: jax.tree.map(lambda w, d: w + sign * step * d, params, v)
  g_plus, g_minus = grad_fn(shift(1.0)), grad_fn(shift(-1.0))
  return jax.tree.map(lambda a, b: (a - b) / (2 * step), g_plus, g_minus)


HVPS = {"exact": exact_hvp, "finite_difference": finite_difference_hvp}


class EigenResult(NamedTuple):
  """Top-k eigenpairs of a symmetric operator, largest first."""
  eigenvalues: jax.Array   # [k]
  vectors: jax.Array       # [k, n] unit eigenvector estimates (raveled)
  residuals: jax.Array     # [k] ||H y_i − θ_i y_i||
  num_matvecs: jax.Array   # int32 []: HVPs used


def _start_vector(v0: jax.Array, key: jax.Array) -> jax.Array:
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


class _LanczosState(NamedTuple):
  j: jax.Array          # steps done (= HVPs used)
  basis: jax.Array      # [m + 1, n]
  alphas: jax.Array     # [m]
  betas: jax.Array      # [m]
  block_start: jax.Array  # first step of the current Krylov block (after the last restart)
  done: jax.Array       # bool
  key: jax.Array


def lanczos_start(v0: jax.Array, key: jax.Array, *, k: int, max_steps: int) -> _LanczosState:
  """The state before the first Lanczos step (see `lanczos`)."""
  n = v0.shape[0]
  m = min(max_steps, n)
  if not 1 <= k <= m:
    raise ValueError(f"need 1 <= k <= min(max_steps, n) = {m}, got k = {k}")
  dtype = v0.dtype
  key, start_key = jax.random.split(key)
  basis = jnp.zeros((m + 1, n), dtype).at[0].set(_start_vector(v0, start_key))
  zero = jnp.zeros([], jnp.int32)
  return _LanczosState(zero, basis, jnp.zeros(m, dtype), jnp.zeros(m, dtype), zero,
                       jnp.zeros([], bool), key)


def lanczos_step(matvec: MatVec, s: _LanczosState, *, k: int, tol: float,
                 min_steps: int = 1) -> _LanczosState:
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
  return _LanczosState(j, s.basis.at[j].set(nxt), alphas, betas, block_start, done, key)


def lanczos_finish(s: _LanczosState, *, k: int) -> EigenResult:
  """The top-k Ritz pairs and their residuals of a finished (or stopped) Lanczos state."""
  m = s.alphas.shape[0]
  values, vectors = _tridiagonal_top_k(s.alphas, s.betas, 0, s.j, k)
  last_beta = s.betas[s.j - 1]
  residuals = jnp.abs(last_beta * vectors[s.j - 1])
  ritz = vectors.T @ s.basis[:m]                          # [k, n]
  ritz = ritz / jnp.linalg.norm(ritz, axis=1, keepdims=True)
  return EigenResult(values, ritz, residuals, s.j)


def lanczos(matvec: MatVec, v0: jax.Array, key: jax.Array, *, k: int, max_steps: int,
            tol: float, min_steps: int = 1) -> EigenResult:
  """Top-k algebraic eigenpairs of the symmetric operator `matvec` by Lanczos (see module doc):
  `lanczos_start`, `lanczos_step` in a `lax.while_loop` until done, `lanczos_finish`.

  Args:
    matvec: v ↦ Hv on vectors of shape [n].
    v0: start vector [n] (a warm start); a zero vector means a random start drawn from `key`.
    key: PRNG key for the random start and for restarts after breakdown.
    k: number of eigenpairs, 1 <= k <= max_steps.
    max_steps: cap on Lanczos steps (= HVPs); also capped at n.
    tol: stop once every residual ||H y_i − θ_i y_i|| <= tol · max|θ|.
    min_steps: never stop before this many steps.
  """
  init = lanczos_start(v0, key, k=k, max_steps=max_steps)
  final = jax.lax.while_loop(
      lambda s: ~s.done, lambda s: lanczos_step(matvec, s, k=k, tol=tol, min_steps=min_steps),
      init)
  return lanczos_finish(final, k=k)


def subspace_iteration(matvec: MatVec, v0: jax.Array, key: jax.Array, *, k: int,
                       max_iters: int = 100, rtol: float = 1e-3) -> EigenResult:
  """The reference's method: Q ← orth(H Q) until every ||H q_i|| changes by < rtol (relative).

  Returns magnitudes ||H q_i|| (not signed eigenvalues), as the reference does; k = 1 is power
  iteration. Residuals are ||H q_i − λ_i q_i|| of the last iterate, at no extra HVP.
  """
  n = v0.shape[0]
  first = _start_vector(v0, key)[None]
  rest = jax.random.normal(jax.random.fold_in(key, 1), (k - 1, n), v0.dtype)
  q = jnp.linalg.qr(jnp.concatenate([first, rest]).T)[0].T        # [k, n]
  batched = jax.vmap(matvec)

  def body(s):
    i, q, norms, _, _ = s
    z = batched(q)                                                 # [k, n]
    new_norms = jnp.linalg.norm(z, axis=1)
    change = jnp.max(jnp.abs(new_norms - norms) / jnp.maximum(jnp.abs(norms), 1e-30))
    residuals = jnp.linalg.norm(z - new_norms[:, None] * q, axis=1)
    q_next = jnp.linalg.qr(z.T)[0].T
    return i + 1, q_next, new_norms, change, (q, residuals)

  init = (jnp.zeros([], jnp.int32), q, jnp.zeros(k, v0.dtype), jnp.array(jnp.inf, v0.dtype),
          (q, jnp.zeros(k, v0.dtype)))
  i, _, norms, _, (q_last, residuals) = jax.lax.while_loop(
      lambda s: (s[0] < max_iters) & (s[3] >= rtol), body, init)
  order = jnp.argsort(-norms)
  return EigenResult(norms[order], q_last[order], residuals[order], i * k)


power_iteration = functools.partial(subspace_iteration, k=1)


def operator(loss_fn: LossFn, params: PyTree, batch: PyTree, hvp: str = "exact",
             precondition: PyTree | None = None) -> tuple[MatVec, jax.Array, Callable]:
  """(v ↦ A v on raveled vectors, the raveled parameters, unravel) for A = H, or
  P^{-1/2} H P^{-1/2} with a positive diagonal `precondition` P (a params pytree)."""
  flat_params, unravel = ravel_pytree(params)
  hvp_fn = HVPS[hvp]
  matvec = lambda v: ravel_pytree(
      hvp_fn(loss_fn, params, batch, unravel(v.astype(flat_params.dtype))))[0]
  if precondition is not None:
    inv_sqrt = jax.lax.rsqrt(ravel_pytree(precondition)[0].astype(flat_params.dtype))
    plain = matvec
    matvec = lambda v: inv_sqrt * plain(inv_sqrt * v)
  return matvec, flat_params, unravel


def top_eigenpairs(loss_fn: LossFn, params: PyTree, batch: PyTree, v0: PyTree, key: jax.Array, *,
                   method: str = "lanczos", hvp: str = "exact", k: int = 1, max_steps: int = 20,
                   tol: float = 1e-4, min_steps: int = 1,
                   precondition: PyTree | None = None) -> tuple[EigenResult, PyTree]:
  """Top-k eigenpairs of the Hessian H of `loss_fn` at `params` on `batch` or, with a positive
  diagonal `precondition` P (a params pytree), of P^{-1/2} H P^{-1/2}.

  `v0` (a parameter-shaped pytree, zeros for none) is the start vector. Returns the result on
  raveled vectors and the principal eigenvector as a parameter pytree (in the operator's own
  coordinates). Pure: jit it once per run (all of params, batch, v0, key and P are arguments, so
  new values never retrace).
  """
  matvec, flat_params, unravel = operator(loss_fn, params, batch, hvp, precondition)
  flat_v0 = ravel_pytree(v0)[0].astype(flat_params.dtype)
  if method == "lanczos":
    result = lanczos(matvec, flat_v0, key, k=k, max_steps=max_steps, tol=tol, min_steps=min_steps)
  elif method == "power":
    result = subspace_iteration(matvec, flat_v0, key, k=k)
  else:
    raise ValueError(f"unknown eigensolver {method!r}: expected 'lanczos' or 'power'")
  return result, unravel(result.vectors[0])
