"""The top-k eigenpairs of the training-loss Hessian (or of Adam's preconditioned Hessian) at a
parameter pytree, by Lanczos or by the reference's power/subspace iteration.
"""

import dataclasses

import jax
from jax.flatten_util import ravel_pytree

from sam_edge.curvature import hvp, lanczos, power
from sam_edge.pytree import PyTree


@dataclasses.dataclass(frozen=True)
class Solver:
  """How the top eigenpairs are found: `method` lanczos (signed eigenvalues with residuals,
  stopping once every residual ||Hv − λv|| <= tol·|λ1| after at least `min_steps` and at most
  `max_steps` HVPs) or power (the reference's power/subspace iteration: magnitudes), on HVPs
  computed by `hvp` (exact: forward-over-reverse; finite_difference: the reference's central
  difference); `k` pairs."""
  method: str = "lanczos"
  hvp: str = "exact"
  k: int = 1
  max_steps: int = 20
  tol: float = 1e-4
  min_steps: int = 1


def top_eigenpairs(loss_fn: hvp.LossFn, params: PyTree, batch: PyTree, v0: PyTree,
                   key: jax.Array, solver: Solver = Solver(),
                   precondition: PyTree | None = None) -> tuple[lanczos.EigenResult, PyTree]:
  """Top-k eigenpairs of the Hessian H of `loss_fn` at `params` on `batch` by `solver` or, with
  a positive diagonal `precondition` P (a params pytree), of P^{-1/2} H P^{-1/2}.

  `v0` (a parameter-shaped pytree, zeros for none) is the start vector. Returns the result on
  raveled vectors and the principal eigenvector as a parameter pytree (in the operator's own
  coordinates). Pure: jit it once per run (all of params, batch, v0, key and P are arguments, so
  new values never retrace).
  """
  s = solver
  matvec, flat_params, unravel = hvp.operator(loss_fn, params, batch, s.hvp, precondition)
  flat_v0 = ravel_pytree(v0)[0].astype(flat_params.dtype)
  if s.method == "lanczos":
    result = lanczos.lanczos(matvec, flat_v0, key, k=s.k, max_steps=s.max_steps, tol=s.tol,
                             min_steps=s.min_steps)
  elif s.method == "power":
    result = power.subspace_iteration(matvec, flat_v0, key, k=s.k)
  else:
    raise ValueError(f"unknown eigensolver {s.method!r}: expected 'lanczos' or 'power'")
  return result, unravel(result.vectors[0])
