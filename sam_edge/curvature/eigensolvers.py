"""The top-k eigenpairs of the training-loss Hessian (or of Adam's preconditioned Hessian) at a
parameter pytree, by Lanczos or by the reference's power/subspace iteration.
"""

from typing import Any

import jax
from jax.flatten_util import ravel_pytree

from sam_edge.curvature import hvp, lanczos, power

PyTree = Any


def top_eigenpairs(loss_fn: hvp.LossFn, params: PyTree, batch: PyTree, v0: PyTree,
                   key: jax.Array, *, method: str = "lanczos", hvp_method: str = "exact",
                   k: int = 1, max_steps: int = 20,
                   tol: float = 1e-4, min_steps: int = 1,
                   precondition: PyTree | None = None) -> tuple[lanczos.EigenResult, PyTree]:
  """Top-k eigenpairs of the Hessian H of `loss_fn` at `params` on `batch` or, with a positive
  diagonal `precondition` P (a params pytree), of P^{-1/2} H P^{-1/2}.

  `v0` (a parameter-shaped pytree, zeros for none) is the start vector. Returns the result on
  raveled vectors and the principal eigenvector as a parameter pytree (in the operator's own
  coordinates). Pure: jit it once per run (all of params, batch, v0, key and P are arguments, so
  new values never retrace).
  """
  matvec, flat_params, unravel = hvp.operator(loss_fn, params, batch, hvp_method, precondition)
  flat_v0 = ravel_pytree(v0)[0].astype(flat_params.dtype)
  if method == "lanczos":
    result = lanczos.lanczos(matvec, flat_v0, key, k=k, max_steps=max_steps, tol=tol,
                             min_steps=min_steps)
  elif method == "power":
    result = power.subspace_iteration(matvec, flat_v0, key, k=k)
  else:
    raise ValueError(f"unknown eigensolver {method!r}: expected 'lanczos' or 'power'")
  return result, unravel(result.vectors[0])
