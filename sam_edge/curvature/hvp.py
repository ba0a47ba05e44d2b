"""Hessian-vector products of a loss at parameters w on one batch (H = ∇²L(w)):

  * exact, forward-over-reverse:   Hv = d/dt ∇L(w + t v) |_{t=0}  = jax.jvp(∇L, (w,), (v,))[1]
  * central finite difference (the reference's, kept for comparison, step h = 1e-3):
                                   Hv ≈ (∇L(w + h v) − ∇L(w − h v)) / (2h)

and `operator`, the Hessian (or the preconditioned P^{-1/2} H P^{-1/2}) as a linear map on the
raveled parameter vector (`jax.flatten_util.ravel_pytree`), which the eigensolvers take.
"""

from typing import Callable

import jax
from jax.flatten_util import ravel_pytree

from sam_edge.pytree import PyTree

LossFn = Callable[[PyTree, PyTree], jax.Array]    # (params, batch) -> scalar loss
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


def operator(loss_fn: LossFn, params: PyTree, batch: PyTree, method: str = "exact",
             precondition: PyTree | None = None) -> tuple[MatVec, jax.Array, Callable]:
  """(v ↦ A v on raveled vectors, the raveled parameters, unravel) for A = H, or
  P^{-1/2} H P^{-1/2} with a positive diagonal `precondition` P (a params pytree)."""
  flat_params, unravel = ravel_pytree(params)
  hvp_fn = HVPS[method]
  matvec = lambda v: ravel_pytree(
      hvp_fn(loss_fn, params, batch, unravel(v.astype(flat_params.dtype))))[0]
  if precondition is not None:
    inv_sqrt = jax.lax.rsqrt(ravel_pytree(precondition)[0].astype(flat_params.dtype))
    plain = matvec
    matvec = lambda v: inv_sqrt * plain(inv_sqrt * v)
  return matvec, flat_params, unravel
