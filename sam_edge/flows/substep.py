"""One Euler substep of the central flow and of gradient flow, and one GD step, on the raveled
parameter vector w (`jax.flatten_util.ravel_pytree`) with `loss(w, batch)`. Time t counts GD
steps: a GD step w ← w − η∇L is one unit of t, and a substep advances t by dt = 1/substeps.

  central flow    dw/dt = −η [∇L + ½ Σ_ij Σ_ij ∇H_ij]    (Σ: `complementarity.solve`)
  gradient flow   dw/dt = −η ∇L

The critical eigenpairs are the top-k of H(w) by Lanczos (`curvature.lanczos`), warm-started
from the previous substep's eigenvectors (their sum as the start vector); ∇H_ij = ∇³L[u_i, u_j]
is `curvature.sharpness_gradient.curvature_gradient`, one per pair i ≤ j. Every function here is
pure: the PRNG key (Lanczos' restarts) is an argument.
"""

from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp

from sam_edge.curvature import hvp, lanczos, sharpness_gradient
from sam_edge.flows import complementarity

Loss = Callable[[jax.Array, Any], jax.Array]


class Eigen(NamedTuple):
  """How the critical eigenpairs are found: Lanczos' HVP budget and residual tolerance."""
  max_steps: int = 30
  tol: float = 1e-4


class FlowPoint(NamedTuple):
  """What a central-flow substep saw at its start."""
  loss: jax.Array              # L(w)
  eigenvalues: jax.Array       # [k] λ_1 ≥ .. ≥ λ_k of H(w)
  sigma: jax.Array             # [k, k] Σ
  predicted_loss: jax.Array    # L + ½⟨Σ, UᵀHU⟩
  hvps: jax.Array              # Lanczos' HVPs


def eigenpairs(loss: Loss, w: jax.Array, batch: Any, vectors: jax.Array, key: jax.Array,
               eigen: Eigen) -> lanczos.EigenResult:
  """Top-k eigenpairs of ∇²L(w), k = len(vectors), Lanczos from the sum of `vectors` (zeros: a
  random start)."""
  matvec = lambda v: hvp.exact_hvp(loss, w, batch, v)
  k = vectors.shape[0]
  return lanczos.lanczos(matvec, jnp.sum(vectors, axis=0), key, k=k,
                         max_steps=max(eigen.max_steps, k), tol=eigen.tol, min_steps=k)


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
  found = eigenpairs(loss, w, batch, vectors, key, eigen)
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
