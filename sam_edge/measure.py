"""One Hessian measurement -> one record of the edge-of-stability quantities.

At parameters w on batch B, with g = ∇L(w), g_SAM the SAM gradient and (λ_i, v_i) the top-k
Hessian eigenpairs (v_1 principal), a record holds

    eigenvalues λ_1 ≥ … ≥ λ_k, their residuals ||H v_i − λ_i v_i||, the HVPs used,
    2/η, the SAM-edge(||g||, η, ρ), ||g||, L(w),
    g_alignment  = |cos(g, v_1)|,   sg_alignment = |cos(g_SAM, v_1)|.

Everything runs at matmul precision "highest" (TF32 on GPUs would otherwise dominate the
error). The measurement is pure: it never changes the parameters or the training batches.
"""

import dataclasses
from typing import Any, Callable

import jax
import optax

from sam_edge import edges, hessian, steps, trees

PyTree = Any
Record = dict[str, jax.Array]

PRECISION = "highest"


@dataclasses.dataclass(frozen=True)
class MeasureSettings:
  """How a measurement is taken."""
  step_size: float
  rho: float
  num_eigenvalues: int = 1          # k
  eigensolver: str = "lanczos"      # lanczos | power
  hvp: str = "exact"                # exact | finite_difference
  max_steps: int = 20               # Lanczos step (= HVP) cap
  tol: float = 1e-4                 # Lanczos relative residual tolerance
  min_steps: int = 3                # Lanczos never stops before this many HVPs


def measure(loss_fn: steps.LossFn, settings: MeasureSettings, params: PyTree, batch: PyTree,
            v0: PyTree, key: jax.Array) -> tuple[Record, PyTree]:
  """Returns the record (see module doc) and the principal eigenvector v_1 (a params pytree).

  `v0` warm-starts the eigen-solver (pass the previous measurement's v_1; zeros for a random
  start drawn from `key`).
  """
  with jax.default_matmul_precision(PRECISION):
    grads = steps.sam_gradients(loss_fn, params, batch, settings.rho)
    result, v1 = hessian.top_eigenpairs(
        loss_fn, params, batch, v0, key, method=settings.eigensolver, hvp=settings.hvp,
        k=settings.num_eigenvalues, max_steps=settings.max_steps, tol=settings.tol,
        min_steps=settings.min_steps)
    grad_norm = optax.tree.norm(grads.grad)
    record = {
        "eigenvalues": result.eigenvalues,
        "residuals": result.residuals,
        "hvps": result.num_matvecs,
        "two_over_eta": edges.two_over_eta(settings.step_size),
        "sam_edge": edges.sam_edge(grad_norm, settings.step_size, settings.rho),
        "grad_norm": grad_norm,
        "loss": grads.loss,
        "g_alignment": trees.alignment(grads.grad, v1),
        "sg_alignment": trees.alignment(grads.sam_grad, v1),
    }
  return record, v1


def make_measure(loss_fn: steps.LossFn, settings: MeasureSettings
                 ) -> Callable[[PyTree, PyTree, PyTree, jax.Array], tuple[Record, PyTree]]:
  """`measure` jitted once for this loss and settings: `(params, batch, v0, key) -> (record, v1)`.

  Parameters, batch, start vector and key are arguments, so later measurements with new values
  of the same shapes reuse the compiled function.
  """
  jitted = jax.jit(lambda params, batch, v0, key: measure(loss_fn, settings, params, batch, v0, key))

  def run(params: PyTree, batch: PyTree, v0: PyTree, key: jax.Array) -> tuple[Record, PyTree]:
    with jax.default_matmul_precision(PRECISION):
      return jitted(params, batch, v0, key)
  return run
