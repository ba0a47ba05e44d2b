"""One Euler substep of the central flow and of gradient flow, and one GD step, on the raveled
parameter vector w (`jax.flatten_util.ravel_pytree`) with `loss(w, batch)`. Time t counts GD
steps: a GD step w ← w − η∇L is one unit of t, and a substep advances t by dt = 1/substeps.

  central flow    dw/dt = −η [∇L + ½ Σ_ij Σ_ij ∇H_ij]    (Σ: `complementarity.solve`)
  gradient flow   dw/dt = −η ∇L

The critical eigenpairs are the top-k of H(w) by LOBPCG (`block_eigenpairs`), warm-started from
the previous substep's eigenvectors as its block, which is checked once per GD step against the
rest of the spectrum (`refresh_block`); GD's λ1 is Lanczos' (`curvature.lanczos`, warm-started
from the previous step's vector). ∇H_ij = ∇³L[u_i, u_j]
is `curvature.sharpness_gradient.curvature_gradient`, one per pair i ≤ j. Every function here is
pure: the PRNG key (Lanczos' restarts, LOBPCG's random first block) is an argument.
"""

from typing import Any, Callable, NamedTuple

import jax
import jax.experimental.sparse.linalg as lobpcg
import jax.numpy as jnp

from sam_edge.curvature import hvp, lanczos, sharpness_gradient
from sam_edge.flows import complementarity

Loss = Callable[[jax.Array, Any], jax.Array]


class Eigen(NamedTuple):
  """How eigenpairs are found: the HVP budget per solve and the residual tolerance relative to
  the eigenvalue."""
  max_steps: int = 30
  tol: float = 1e-4


class BlockEigen(NamedTuple):
  """Top-k eigenpairs from `block_eigenpairs`, largest first."""
  eigenvalues: jax.Array       # [k]
  vectors: jax.Array           # [k, n] unit eigenvectors (rows)
  num_matvecs: jax.Array       # HVPs used


class FlowPoint(NamedTuple):
  """What a central-flow substep saw at its start."""
  loss: jax.Array              # L(w)
  eigenvalues: jax.Array       # [k] λ_1 ≥ .. ≥ λ_k of H(w)
  sigma: jax.Array             # [k, k] Σ
  predicted_loss: jax.Array    # L + ½⟨Σ, UᵀHU⟩
  hvps: jax.Array              # the eigensolver's HVPs
  outsider: jax.Array = jnp.nan  # λ_{k+1}: the largest eigenvalue outside the block (per step)


def eigenpairs(loss: Loss, w: jax.Array, batch: Any, vectors: jax.Array, key: jax.Array,
               eigen: Eigen) -> lanczos.EigenResult:
  """Top-k eigenpairs of ∇²L(w), k = len(vectors), Lanczos from the sum of `vectors` (zeros: a
  random start)."""
  matvec = lambda v: hvp.exact_hvp(loss, w, batch, v)
  k = vectors.shape[0]
  return lanczos.lanczos(matvec, jnp.sum(vectors, axis=0), key, k=k,
                         max_steps=max(eigen.max_steps, k), tol=eigen.tol, min_steps=k)


def block_eigenpairs(loss: Loss, w: jax.Array, batch: Any, vectors: jax.Array, key: jax.Array,
                     eigen: Eigen) -> "BlockEigen":
  """Top-k eigenpairs of ∇²L(w), k = len(vectors), by LOBPCG (`lobpcg_standard`) from the block
  `vectors` (rows; a random block where they are zero), with HVPs vmapped over the block.

  Near-degenerate critical eigenvalues (λ_2 and λ_3 within 1% of λ_1 at the edge) are where a
  single-vector Krylov method from the sum of the old vectors converges slowly; the flow's Σ
  divides the gap 2/η − λ_i by a small β (`complementarity`), so an eigenvalue error becomes a
  jump in Σ and in the predicted loss. A block started from the previous substep's vectors is
  nearly invariant already. Each iteration costs 4k HVPs (H on [X, P, R] and on the new X), the
  start k; the iterations are capped so that the total stays within `eigen.max_steps` (at least
  one), and stop early once every residual ‖Hu − θu‖ is at most about `eigen.tol`·θ. A problem
  with n ≤ 5k parameters (LOBPCG's limit) is solved exactly: H from n HVPs, then `eigh`."""
  k, n = vectors.shape
  vectors = vectors.astype(w.dtype)
  block = lambda x: column_hvps(loss, w, batch, x)
  if 5 * k >= n:                       # LOBPCG needs n > 5k: a tiny problem is solved whole
    values, vecs = jnp.linalg.eigh(dense_hessian(loss, w, batch))
    return BlockEigen(values[::-1][:k], vecs[:, ::-1][:, :k].T, jnp.asarray(n, jnp.int32))
  random = jax.random.normal(key, (n, k), w.dtype)
  start = jnp.where(jnp.linalg.norm(vectors, axis=1)[None, :] > 0, vectors.T, random)
  iterations = max(1, (eigen.max_steps - k) // (4 * k))
  # lobpcg's test: ‖r‖ < tol·10·n·(‖Hu‖ + θ) ≈ tol·20·n·θ; so tol = eigen.tol / (20 n).
  theta, u, done = lobpcg.lobpcg_standard(block, start, m=iterations, tol=eigen.tol / (20 * n))
  return BlockEigen(theta, u.T, k + 4 * k * done)


OUTSIDER_STEPS = 20     # Lanczos steps (HVPs) of the once-per-step check outside the block


class Refreshed(NamedTuple):
  """The block after `refresh_block`."""
  vectors: jax.Array             # [k, n] the top k Ritz vectors of span[U, v]
  outsider: jax.Array            # [n] the k + 1-th: the next check's start
  outsider_eigenvalue: jax.Array  # its Ritz value: the largest eigenvalue outside the block
  num_matvecs: jax.Array         # HVPs used


def refresh_block(loss: Loss, w: jax.Array, batch: Any, vectors: jax.Array, outsider: jax.Array,
                  key: jax.Array, eigen: Eigen) -> Refreshed:
  """The warm block checked against the rest of the spectrum.

  LOBPCG from the last block follows the block's own invariant subspace as w moves: once its
  residuals are small it stops, and a direction outside the block whose eigenvalue rises past
  λ_k (an avoided crossing passed too fast) is never seen; left out of Σ, that eigenvalue grows
  past 2/η unchecked until LOBPCG stumbles on it and Σ jumps to pull it back in one substep.
  So once per GD step: Lanczos (OUTSIDER_STEPS HVPs, warm-started from the last outsider) finds
  the top eigenpair (θ, v) of the deflated operator (I − UUᵀ) H (I − UUᵀ), U the block's rows
  (orthonormal), and Rayleigh–Ritz on span[U, v] (k + 1 HVPs) keeps its top k Ritz vectors as
  the block and the last one as the next outsider. Where θ < λ_k the block is unchanged up to
  its own accuracy; where θ > λ_k, v enters it. An outsider eigenvalue at 2/η means that more
  than k eigenvalues are at the edge."""
  k, n = vectors.shape
  u = vectors.astype(w.dtype)
  deflate = lambda v: v - u.T @ (u @ v)
  matvec = lambda v: deflate(hvp.exact_hvp(loss, w, batch, deflate(v)))
  found = lanczos.lanczos(matvec, deflate(outsider.astype(w.dtype)), key, k=1,
                          max_steps=min(OUTSIDER_STEPS, n - k), tol=eigen.tol)
  basis, _ = jnp.linalg.qr(jnp.concatenate([u, found.vectors]).T)          # [n, k+1]
  h_basis = column_hvps(loss, w, batch, basis)
  values, ritz = jnp.linalg.eigh(0.5 * (basis.T @ h_basis + h_basis.T @ basis))  # ascending
  rotated = (basis @ ritz[:, ::-1]).T                                       # [k+1, n], top first
  return Refreshed(rotated[:k], rotated[k], values[0], found.num_matvecs + k + 1)


def outsider_eigenvalue(loss: Loss, w: jax.Array, batch: Any, k: int) -> jax.Array:
  """λ_{k+1}(H(w)) from the dense Hessian (n HVPs; −inf where n ≤ k): a small problem's check,
  where the substeps solve the whole spectrum anyway."""
  n = w.shape[0]
  if n <= k:
    return jnp.asarray(-jnp.inf, w.dtype)
  return jnp.linalg.eigvalsh(dense_hessian(loss, w, batch))[::-1][k]


def column_hvps(loss: Loss, w: jax.Array, batch: Any, x: jax.Array) -> jax.Array:
  """H(w) X for the columns of X [n, m], vmapped."""
  return jax.vmap(lambda v: hvp.exact_hvp(loss, w, batch, v), 1, 1)(x)


def dense_hessian(loss: Loss, w: jax.Array, batch: Any) -> jax.Array:
  """H(w) [n, n] from n vmapped HVPs, symmetrised: for problems small enough to solve whole."""
  dense = column_hvps(loss, w, batch, jnp.eye(w.shape[0], dtype=w.dtype))
  return 0.5 * (dense + dense.T)


def curvature_gradients(loss: Loss, w: jax.Array, batch: Any, vectors: jax.Array) -> jax.Array:
  """[k, k, n]: ∇H_ij = ∇³L(w)[u_i, u_j] for the rows u_i of `vectors` (pairs i ≤ j computed,
  the rest by symmetry)."""
  k = vectors.shape[0]
  rows, cols = jnp.triu_indices(k)
  pair = lambda ij: sharpness_gradient.curvature_gradient(loss, w, batch, vectors[ij[0]],
                                                          vectors[ij[1]])
  upper = jax.lax.map(pair, (rows, cols))                           # [k(k+1)/2, n]
  full = jnp.zeros((k, k, w.shape[0]), w.dtype).at[rows, cols].set(upper)
  return full.at[cols, rows].set(upper)


def central_substep(loss: Loss, w: jax.Array, vectors: jax.Array, batch: Any, key: jax.Array,
                    *, step_size: float, dt: float, eigen: Eigen
                    ) -> tuple[jax.Array, jax.Array, FlowPoint]:
  """w + dt·dw/dt of the central flow (module doc), with the eigenvectors found (for the next
  warm start) and what the substep saw at its start."""
  value, grad = jax.value_and_grad(loss)(w, batch)
  found = block_eigenpairs(loss, w, batch, vectors, key, eigen)
  d_h = curvature_gradients(loss, w, batch, found.vectors)         # [k, k, n]
  gram = jnp.einsum("ijn,kln->ijkl", d_h, d_h)
  drift = jnp.einsum("ijn,n->ij", d_h, grad)
  alpha, beta = complementarity.coefficients(found.eigenvalues, gram, drift, step_size, dt)
  sigma = complementarity.solve(alpha, beta)
  velocity = -step_size * (grad + 0.5 * jnp.einsum("ij,ijn->n", sigma, d_h))
  point = FlowPoint(value, found.eigenvalues, sigma,
                    complementarity.predicted_loss(value, found.eigenvalues, sigma),
                    found.num_matvecs)
  return w + dt * velocity, found.vectors, point


def gradient_substep(loss: Loss, w: jax.Array, batch: Any, *, step_size: float, dt: float
                     ) -> tuple[jax.Array, jax.Array]:
  """(w − dt·η∇L(w), L(w)): an Euler substep of gradient flow."""
  value, grad = jax.value_and_grad(loss)(w, batch)
  return w - dt * step_size * grad, value


def gd_step(loss: Loss, w: jax.Array, vector: jax.Array, batch: Any, key: jax.Array, *,
            step_size: float, eigen: Eigen) -> tuple[jax.Array, jax.Array, jax.Array, jax.Array]:
  """(w − η∇L(w), L(w), λ1(H(w)), its eigenvector): one GD step and its sharpness (Lanczos
  warm-started from `vector`)."""
  value, grad = jax.value_and_grad(loss)(w, batch)
  found = eigenpairs(loss, w, batch, vector[None], key, eigen)
  return w - step_size * grad, value, found.eigenvalues[0], found.vectors[0]
