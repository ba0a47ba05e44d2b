"""One Hessian measurement -> one record of the edge-of-stability quantities.

At parameters w on batch B, with η the step size of this step, g = ∇L(w), g_SAM the gradient the
base optimizer would see (the SAM gradient of the configured variant; g itself when ρ = 0) and
(λ_i, v_i) the top-k eigenpairs of the measured operator A (v_1 principal), a record holds

    eigenvalues λ_1 ≥ … ≥ λ_k of A, their residuals ||A v_i − λ_i v_i||, `converged` (every
    residual <= tol · max|λ|), the HVPs used, `eigenvalue_kind` ("signed", or "magnitude" for
    the power iteration, which returns |λ| as the reference does), `operator`,
    `step_size` η, `two_over_eta` 2/η, `sam_edge` SAM-edge(||g||, η, ρ),
    `edge` (the configured method's own stability threshold, `edges.method_edge`; None where no
    closed form is known) and `edge_label` (its formula), ||g||, L(w),
    g_alignment  = |cos(g, v_1)|,   sg_alignment = |cos(g_SAM, v_1)|,

and the keys of each requested curvature kind (`curvature.registry`: the trace with its
standard error, the SLQ spectral density, per-layer sharpness, λ_min), all of the Hessian H.

A is the Hessian H of the training loss (`operator` "hessian"), except for Adam, where it is
the preconditioned Hessian P^{-1/2} H P^{-1/2} (`operator` "preconditioned_hessian") with P the
diagonal preconditioner of the next Adam step (`optimizers.adam_preconditioner`); in its
coordinates z = P^{1/2} w, Adam is plain momentum on A, and the alignments are those of the
gradients there, P^{-1/2} g and P^{-1/2} g_SAM, with v_1.

Everything runs at matmul precision "highest" (TF32 on GPUs would otherwise dominate the error).
The measurement is pure: it never changes the parameters, the model state or the batches.
"""

import dataclasses
from typing import Any, Callable, NamedTuple, Optional

import jax
import jax.numpy as jnp
import optax

from sam_edge import batching, edges, hessian, optimizers, steps, trees
from sam_edge.curvature import registry

PyTree = Any
Record = dict[str, Any]
# (params, model_state, batch, constants) -> (loss, new model_state) and -> loss
TrainLoss = Callable[[PyTree, PyTree, PyTree, PyTree], tuple[jax.Array, PyTree]]
HessianLoss = Callable[[PyTree, PyTree, PyTree, PyTree], jax.Array]

PRECISION = "highest"


@dataclasses.dataclass(frozen=True)
class MeasureSettings:
  """How a measurement is taken, and the method whose edge it reports."""
  optimizer: optimizers.OptimizerSettings = optimizers.OptimizerSettings()
  sam: steps.SamSettings = steps.SamSettings()
  batch_size: Optional[int] = None  # for the edge of m-sharpness (group size vs batch)
  num_eigenvalues: int = 1          # k
  eigensolver: str = "lanczos"      # lanczos | power
  hvp: str = "exact"                # exact | finite_difference
  max_steps: int = 20               # Lanczos step (= HVP) cap
  tol: float = 1e-4                 # relative residual tolerance
  min_steps: int = 3                # Lanczos never stops before this many HVPs
  curvature: tuple[tuple[str, Any], ...] = ()   # (kind, settings) of `curvature.registry`
  chunk: Optional[int] = None       # losses, gradients and HVPs over chunks of this many examples

  @property
  def preconditioned(self) -> bool:
    return self.optimizer.name == "adam"

  def edge_label(self) -> Optional[str]:
    o = self.optimizer
    return edges.edge_label(o.name, self.sam.kind, self.sam.rho, momentum=o.momentum,
                            adam_b1=o.adam_b1, group_size=self.sam.group_size,
                            batch_size=self.batch_size, weight_decay=o.weight_decay)


class Context(NamedTuple):
  """What a measurement reads besides the parameters (all arrays: jit arguments)."""
  model_state: PyTree      # BatchNorm statistics ({} if none)
  opt_state: PyTree        # the optimizer's state (Adam's ν for its preconditioner)
  step: jax.Array          # the step about to be taken (its step size is η)
  constants: PyTree        # e.g. the expansion point of the linearised model ({} if none)


def converged(eigenvalues: jax.Array, residuals: jax.Array, tol: float) -> jax.Array:
  """Whether every requested pair is converged: max_i ||A v_i − λ_i v_i|| <= tol · max_i |λ_i|
  (the Lanczos stopping rule, applied to any solver)."""
  return jnp.all(residuals <= tol * jnp.max(jnp.abs(eigenvalues)))


def eigenvalue_kind(settings: MeasureSettings) -> str:
  """"signed" (Lanczos: algebraic eigenvalues) or "magnitude" (power iteration: |λ|)."""
  return "magnitude" if settings.eigensolver == "power" else "signed"


def adam_gradient_seen(settings: MeasureSettings, params: PyTree, sam_grad: PyTree) -> PyTree:
  """The gradient Adam's next step receives: g_SAM, plus wd·w with L2 weight decay."""
  wd = settings.optimizer.weight_decay
  return optax.tree.add_scale(sam_grad, wd, params) if wd else sam_grad


def size_problems(settings: MeasureSettings, num_params: int) -> list[str]:
  """Settings that need more dimensions than the model has (one line each, naming the flag)."""
  p = []
  for name, s in settings.curvature:
    if name == "density" and s.steps > num_params:
      p.append(f"--density_steps={s.steps} exceeds the {num_params} parameters")
    if name == "trace" and s.method == "hutch++" and s.probes // 3 > num_params:
      p.append(f"--trace_probes={s.probes}: the Hutch++ sketch of {s.probes // 3} exceeds the "
               f"{num_params} parameters")
  return p


def init_state(settings: MeasureSettings, params: PyTree) -> dict:
  """What the first measurement starts from: {"v1": zeros (a random start), "curvature": the
  curvature kinds' states}. Each measurement returns the next one (warm starts)."""
  return {"v1": jax.tree.map(jnp.zeros_like, params),
          "curvature": registry.init_states(dict(settings.curvature), params)}


def measure(train_loss: TrainLoss, hessian_loss: HessianLoss, settings: MeasureSettings,
            params: PyTree, context: Context, batch: PyTree, state: dict, key: jax.Array
            ) -> tuple[Record, dict]:
  """Returns the record (see module doc) and the next measurement state (`init_state`): the
  principal eigenvector v_1 (a params pytree, in the operator's coordinates) and the curvature
  kinds' states.

  `state["v1"]` warm-starts the eigen-solver (the previous measurement's v_1; zeros for a
  random start drawn from `key`).
  """
  v0 = state["v1"]
  top_key, curvature_key = jax.random.split(key)
  o = settings.optimizer
  with jax.default_matmul_precision(PRECISION):
    scalar = lambda p, b: hessian_loss(p, context.model_state, b, context.constants)
    if settings.chunk:               # memory of one chunk (no model state: it is refused then)
      scalar = batching.chunked_loss(scalar, settings.chunk)
      loss_fn = lambda p, b: (scalar(p, b), context.model_state)
    else:
      loss_fn = lambda p, b: train_loss(p, context.model_state, b, context.constants)
    grads = steps.sam_gradients(loss_fn, params, batch, settings.sam)
    precondition = None
    grad, sam_grad = grads.grad, grads.sam_grad
    if settings.preconditioned:
      precondition = optimizers.adam_preconditioner_from_state(
          context.opt_state, adam_gradient_seen(settings, params, grads.sam_grad), o.adam_b2,
          o.adam_eps)
      inv_sqrt = jax.tree.map(jax.lax.rsqrt, precondition)
      grad = jax.tree.map(jnp.multiply, inv_sqrt, grad)
      sam_grad = jax.tree.map(jnp.multiply, inv_sqrt, sam_grad)
    result, v1 = hessian.top_eigenpairs(
        scalar, params, batch, v0, top_key, method=settings.eigensolver, hvp=settings.hvp,
        k=settings.num_eigenvalues, max_steps=settings.max_steps, tol=settings.tol,
        min_steps=settings.min_steps, precondition=precondition)
    grad_norm = optax.tree.norm(grads.grad)
    eta = optimizers.step_size_at(o.learning_rate(), context.step)
    edge = edges.method_edge(o.name, settings.sam.kind, settings.sam.rho, eta,
                             momentum=o.momentum, adam_b1=o.adam_b1, grad_norm=grad_norm,
                             group_size=settings.sam.group_size, batch_size=settings.batch_size,
                             weight_decay=o.weight_decay)
    record = {
        "eigenvalues": result.eigenvalues,
        "residuals": result.residuals,
        "converged": converged(result.eigenvalues, result.residuals, settings.tol),
        "hvps": result.num_matvecs,
        "step_size": eta,
        "two_over_eta": edges.two_over_eta(eta),
        "sam_edge": edges.sam_edge(grad_norm, eta, settings.sam.rho),
        "edge": edge,
        "grad_norm": grad_norm,
        "loss": grads.loss,
        "g_alignment": trees.alignment(grad, v1),
        "sg_alignment": trees.alignment(sam_grad, v1),
    }
    extra, curvature_states = registry.measure_curvature(
        lambda p, b: scalar(p, b), dict(settings.curvature), params, batch, curvature_key,
        state["curvature"])
  return {**record, **extra}, {"v1": v1, "curvature": curvature_states}


def make_measure(train_loss: TrainLoss, hessian_loss: HessianLoss, settings: MeasureSettings
                 ) -> Callable[[PyTree, Context, PyTree, dict, jax.Array], tuple[Record, dict]]:
  """`measure` jitted once for these losses and settings:
  `(params, context, batch, state, key) -> (record, next state)`.

  Everything that changes between measurements is an argument, so later measurements with new
  values of the same shapes reuse the compiled function. Static facts (the kind of eigenvalue,
  the operator, the edge's formula) are added to the record on the host.
  """
  jitted = jax.jit(lambda params, context, batch, state, key: measure(
      train_loss, hessian_loss, settings, params, context, batch, state, key))
  static = {"eigenvalue_kind": eigenvalue_kind(settings),
            "operator": "preconditioned_hessian" if settings.preconditioned else "hessian",
            "edge_label": settings.edge_label()}

  def run(params: PyTree, context: Context, batch: PyTree, state: dict, key: jax.Array
          ) -> tuple[Record, dict]:
    with jax.default_matmul_precision(PRECISION):
      record, new_state = jitted(params, context, batch, state, key)
    return {**record, **static}, new_state
  return run
