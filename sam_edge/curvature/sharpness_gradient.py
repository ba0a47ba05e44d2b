"""The gradient of the sharpness, ∇S = ∇³L[u, u], exactly.

With u the measured top eigenvector (held fixed), S(w) = uᵀ ∇²L(w) u, so ∇S(w) = ∇_w (uᵀ H(w) u)
= ∇³L(w)[u, u]: reverse-mode differentiation of the HVP's quadratic form, about two HVPs' work.
At an eigenvector of a simple top eigenvalue this is the gradient of λ1 itself (Hellmann–Feynman:
∂λ1 = uᵀ (∂H) u for a unit eigenvector u). Self-stabilization (Damian, Nichani and Lee, 2022) and
the central flow (Cohen, Damian et al., 2025) both read it.
"""

from typing import Callable

import jax
import optax

from sam_edge.curvature import hvp
from sam_edge.pytree import PyTree


def curvature_gradient(loss_fn: Callable[[PyTree, PyTree], jax.Array], params: PyTree,
                       batch: PyTree, u: PyTree, v: PyTree) -> PyTree:
  """∇_w (uᵀ H(w) v) = ∇³L(w)[u, v] at `params` on `batch` (a params pytree), u and v fixed; the
  central flow reads it for every pair of critical eigenvectors."""
  bilinear = lambda p: optax.tree.vdot(u, hvp.exact_hvp(loss_fn, p, batch, v))
  return jax.grad(bilinear)(params)


def sharpness_gradient(loss_fn: Callable[[PyTree, PyTree], jax.Array], params: PyTree,
                       batch: PyTree, u: PyTree) -> PyTree:
  """∇_w (uᵀ H(w) u) at `params` on `batch` (a params pytree), u fixed (module doc)."""
  return curvature_gradient(loss_fn, params, batch, u, u)
