"""The top-k eigenpairs of the training-loss Hessian (or of Adam's preconditioned Hessian) at a
parameter pytree, by Lanczos or by the reference's power/subspace iteration; `compiled` runs
Lanczos as a host loop of jitted steps where `optim.oracle.host_loops` says so (the CPU).
"""

import dataclasses
from typing import Any, Callable

import jax
from jax.flatten_util import ravel_pytree

from sam_edge.curvature import hvp, lanczos, power
from sam_edge.optim import oracle
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


def pipeline(before: Callable, hessian: Callable, after: Callable, solver: Solver) -> Callable:
  """`(*args) -> after(args, prepared, top_eigenpairs(*hessian(args, prepared), v0, key))`, where
  `before(*args)` = (prepared, v0, key) and `hessian(args, prepared)` = (loss_fn, params, batch,
  precondition): a computation around one eigen-solve (pure)."""
  def run(*args: Any) -> Any:
    prepared, v0, key = before(*args)
    loss_fn, params, batch, precondition = hessian(args, prepared)
    return after(args, prepared, top_eigenpairs(loss_fn, params, batch, v0, key, solver,
                                                precondition))
  return run


def compiled(before: Callable, hessian: Callable, after: Callable, solver: Solver) -> Callable:
  """`pipeline` compiled once (its arguments all arrays): one jitted function or, where Lanczos'
  loop runs on the host (`oracle.host_loops`, decided at the first call from `before`'s program,
  which takes the loss's gradients), `before` with the Lanczos start, one Lanczos step (repeated
  by the host until done) and `after` with the Lanczos finish, each jitted."""
  device_loop = jax.jit(pipeline(before, hessian, after, solver))
  if solver.method != "lanczos" or not oracle.host_loops():
    return device_loop
  s = solver

  def operator(args, prepared):
    loss_fn, params, batch, precondition = hessian(args, prepared)
    return hvp.operator(loss_fn, params, batch, s.hvp, precondition)

  @jax.jit
  def start(args):
    prepared, v0, key = before(*args)
    _, flat, _ = operator(args, prepared)
    v0 = ravel_pytree(v0)[0].astype(flat.dtype)
    return prepared, lanczos.lanczos_start(v0, key, k=s.k, max_steps=s.max_steps)

  @jax.jit
  def step(args, prepared, state):
    return lanczos.lanczos_step(operator(args, prepared)[0], state, k=s.k, tol=s.tol,
                                min_steps=s.min_steps)

  @jax.jit
  def end(args, prepared, state):
    result = lanczos.lanczos_finish(state, k=s.k)
    return after(args, prepared, (result, operator(args, prepared)[2](result.vectors[0])))

  def host_loop(*args: Any) -> Any:
    prepared, state = start(args)
    while not bool(state.done):
      state = step(args, prepared, state)
    return end(args, prepared, state)

  chosen: list[Callable] = []

  def run(*args: Any) -> Any:
    if not chosen:
      chosen.append(host_loop if oracle.host_loops(before, *args) else device_loop)
    return chosen[0](*args)
  return run
