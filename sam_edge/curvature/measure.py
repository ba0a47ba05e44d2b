"""One Hessian measurement -> one record of the edge-of-stability quantities.

At parameters w on batch B, with η the step size of this step, g = ∇L(w), d the direction the
base optimizer would see at this step (that of the configured SAM variant, from the training
state as it is: see `prepare`; g itself when ρ = 0) and
(λ_i, v_i) the top-k eigenpairs of the measured operator A (v_1 principal), a record holds

    eigenvalues λ_1 ≥ … ≥ λ_k of A, their residuals ||A v_i − λ_i v_i||, `converged` (every
    residual <= tol · max|λ|), the HVPs used, `eigenvalue_kind` ("signed", or "magnitude" for
    the power iteration, which returns |λ| as the reference does), `operator`,
    `step_size` η, `two_over_eta` 2/η, `sam_edge` SAM-edge(||g||, η, ρ),
    `edge` (the configured method's own stability threshold, `edges.method_edge`; None where no
    closed form is known) and `edge_label` (its formula), ||g||, L(w),
    g_alignment  = |cos(g, v_1)|,   sg_alignment = |cos(d, v_1)|,

and the keys of each requested curvature kind (`registry`).

A is the Hessian H of the training loss (`operator` "hessian"), except for an optimizer with a
preconditioner (Adam), where it is P^{-1/2} H P^{-1/2} (`operator` "preconditioned_hessian") with
P the diagonal preconditioner of its next step (`optim.adam`); in the coordinates z = P^{1/2} w
Adam is plain momentum on A, and the alignments are those of P^{-1/2} g and P^{-1/2} d.

The loss is `objective.Objective`: the task's forward pass on the measured batch (its own
BatchNorm statistics) and the loss of its outputs, over chunks with --measure_chunk. Everything
runs at matmul precision "highest" (TF32 on GPUs would otherwise dominate the error). The
measurement is pure: it never changes the parameters, the model state or the batches.
"""

import dataclasses
from typing import Any, Callable, NamedTuple, Optional

import jax
import jax.numpy as jnp
import optax

from sam_edge import trees
from sam_edge.curvature import eigensolvers, lanczos, registry, tracking
from sam_edge.curvature.kind import Inputs
from sam_edge.curvature.objective import Forward, Objective, OutputLoss
from sam_edge.data import batching
from sam_edge.optim import edges, thresholds, update
from sam_edge.optim.method import Method
from sam_edge.optim.oracle import Oracle
from sam_edge.pytree import PyTree

Record = dict[str, Any]

PRECISION = "highest"


@dataclasses.dataclass(frozen=True)
class MeasureSettings:
  """How a measurement is taken, and the method whose edge it reports."""
  method: Method = Method()         # the run's optimizer and SAM variant (one object)
  batch_size: Optional[int] = None  # for the edge of m-sharpness (group size vs batch)
  num_eigenvalues: int = 1          # k
  eigensolver: str = "lanczos"      # lanczos | power
  hvp: str = "exact"                # exact | finite_difference
  max_steps: int = 20               # Lanczos step (= HVP) cap
  tol: float = 1e-4                 # relative residual tolerance
  min_steps: int = 3                # Lanczos never stops before this many HVPs
  curvature: registry.Requested = ()   # (kind, settings) of `registry.KINDS`
  chunk: Optional[int] = None       # losses, gradients and HVPs over chunks of this many examples
  interleave: bool = False          # chunks interleaved as the training step's micro-batches
  track_hvps: int = 0               # λ1 at every step with this many HVPs (`tracking`); 0: off

  @property
  def preconditioned(self) -> bool:
    return self.method.optimizer.entry.preconditioner is not None

  def edge_label(self) -> Optional[str]:
    return edges.edge_label(self.method.optimizer, self.method.sam, self.batch_size)

  @property
  def solver(self) -> eigensolvers.Solver:
    return eigensolvers.Solver(self.eigensolver, self.hvp, self.num_eigenvalues, self.max_steps,
                               self.tol, self.min_steps)


class Context(NamedTuple):
  """What a measurement reads besides the parameters (all arrays: jit arguments)."""
  model_state: PyTree      # BatchNorm statistics ({} if none)
  opt_state: PyTree        # the optimizer's state (Adam's ν for its preconditioner)
  step: jax.Array          # the step about to be taken (its step size is η)
  constants: PyTree        # e.g. the expansion point of the linearized model ({} if none)
  sam_state: PyTree = {}   # the SAM variant's state (Friendly-SAM's m, LookSAM's g_v)
  sam_key: Any = None      # the step's SAM key (`sam_steps.step_key`), for random variants
  arrays: PyTree = None    # the training set (fresh batches for the kinds that draw them)


def converged(eigenvalues: jax.Array, residuals: jax.Array, tol: float) -> jax.Array:
  """Whether every requested pair is converged: max_i ||A v_i − λ_i v_i|| <= tol · max_i |λ_i|
  (the Lanczos stopping rule, applied to any solver)."""
  return jnp.all(residuals <= tol * jnp.max(jnp.abs(eigenvalues)))


def eigenvalue_kind(settings: MeasureSettings) -> str:
  """"signed" (Lanczos: algebraic eigenvalues) or "magnitude" (power iteration: |λ|)."""
  return "magnitude" if settings.eigensolver == "power" else "signed"


def size_problems(settings: MeasureSettings, num_params: int) -> list[str]:
  """Settings that need more dimensions than the model has (one line each, naming the flag)."""
  return registry.size_problems(settings.curvature, num_params)


def init_state(settings: MeasureSettings, params: PyTree) -> dict:
  """What the first measurement starts from: {"v1": zeros (a random start), "curvature": the
  curvature kinds' states[, "tracker": the per-step tracker (`tracking`)]}. Each measurement
  returns the next one (warm starts; the tracker refreshed by v1)."""
  state = {"v1": jax.tree.map(jnp.zeros_like, params),
           "curvature": registry.init_states(settings.curvature, params)}
  if settings.track_hvps:
    state["tracker"] = tracking.init_tracker(params)
  return state


def objective(forward: Forward, output_loss: OutputLoss, settings: MeasureSettings,
              context: Context) -> Objective:
  """The measured loss at this context: the forward pass in float32 with its model state and
  constants, and the L2 term when the weight decay is in the loss (the loss the optimizer
  follows)."""
  return Objective(lambda p, b: forward(p, context.model_state, b, context.constants,
                                        jnp.float32)[0],
                   output_loss, settings.chunk, settings.interleave,
                   settings.method.optimizer.penalty())


class Prepared(NamedTuple):
  """What a measurement computes before its eigen-solver (all arrays)."""
  loss: jax.Array            # L(w)
  grad: PyTree               # ∇L(w)
  grad_seen: PyTree          # g, in the operator's coordinates (P^{-1/2} g for Adam)
  direction_seen: PyTree     # d, likewise
  precondition: Any          # P (a params pytree) for Adam, else None


def prepare(loss: Objective, settings: MeasureSettings, params: PyTree, context: Context,
            batch: PyTree) -> Prepared:
  """L, ∇L, the direction d and, for a preconditioned optimizer, the preconditioner P.

  The direction is what the step at `context.step` would hand the base optimizer on the
  measured batch, from the training state as it is, which the measurement never changes: LookSAM
  uses its stored g_v (or takes SAM's gradient on its every-k steps), Friendly-SAM the average
  m_t = λ m_{t−1} + (1 − λ) g of the stored m_{t−1} and the measured g, ESAM and Random-SAM the
  draws of step t's key. The measured loss already takes the micro-batches of
  --accumulate_batches one at a time (`objective`), so the variant runs on it unsplit. The
  variant's oracle carries L(w) and ∇L(w) (`oracle.Oracle.first`), so L and ∇L are at w for every
  variant, those too that take no gradient at w when training (`variant`).
  """
  o = settings.method.optimizer
  oracle = Oracle(lambda p, b: (loss.loss(p, b), {}), batch, 1, loss.example_losses)
  grads = update.oracle_gradients(
      dataclasses.replace(oracle, first=oracle.value_and_grad(params)), params,
      dataclasses.replace(settings.method.sam, micro_batches=1), state=context.sam_state,
      step=context.step, key=context.sam_key)
  grad, direction, precondition = grads.grad, grads.direction, None
  if settings.preconditioned:
    seen = o.seen(grads.direction, params)  # what the next step receives: c(d + wd·M⊙w)
    precondition = o.entry.preconditioner(context.opt_state, seen, o.values)
    inv_sqrt = jax.tree.map(jax.lax.rsqrt, precondition)
    grad = jax.tree.map(jnp.multiply, inv_sqrt, grad)
    direction = jax.tree.map(jnp.multiply, inv_sqrt, direction)
  return Prepared(grads.loss, grads.grad, grad, direction, precondition)


def finish(loss: Objective, settings: MeasureSettings, point: tuple[PyTree, Context, PyTree],
           state: dict, key: jax.Array, prepared: Prepared,
           solved: tuple[lanczos.EigenResult, PyTree]) -> tuple[Record, dict]:
  """The record and the next state, from the eigen-solver's result and principal eigenvector
  `solved` at `point` = (params, context, batch) (and the curvature kinds)."""
  params, context, batch = point
  result, v1 = solved
  o = settings.method.optimizer
  grad_norm = optax.tree.norm(prepared.grad)
  eta = o.step_size_now(context.opt_state, context.step)
  record = {
      "eigenvalues": result.eigenvalues,
      "residuals": result.residuals,
      "converged": converged(result.eigenvalues, result.residuals, settings.tol),
      "hvps": result.num_matvecs,
      "step_size": eta,
      "two_over_eta": thresholds.two_over_eta(eta),
      "sam_edge": thresholds.sam_edge(grad_norm, eta, settings.method.sam.rho),
      "edge": edges.method_edge(o, settings.method.sam, eta, grad_norm=grad_norm,
                                batch_size=settings.batch_size),
      "grad_norm": grad_norm,
      "loss": prepared.loss,
      "g_alignment": trees.alignment(prepared.grad_seen, v1),
      "sg_alignment": trees.alignment(prepared.direction_seen, v1),
  }
  extra, curvature_states = registry.measure_curvature(
      kind_inputs(loss, settings, params, context, batch, prepared, v1), settings.curvature,
      jax.random.split(key)[1], state["curvature"])
  new_state = {"v1": v1, "curvature": curvature_states}
  if "tracker" in state:
    new_state["tracker"] = tracking.refreshed(state["tracker"], v1)
  return {**record, **extra}, new_state


def kind_inputs(loss: Objective, settings: MeasureSettings, params: PyTree, context: Context,
                batch: PyTree, prepared: Prepared, v1: PyTree) -> Inputs:
  """What the curvature kinds are handed (`kind.Inputs`): u = v1, or P^{-1/2} v1 for a
  preconditioned operator, so that uᵀ H u is the measured λ1; the optimizer's step direction s(d) =
  (w − w_next)/η from its current state (d itself for plain descent); fresh batches of the run's
  batch size drawn uniformly (without replacement within a batch) from the training set."""
  u = v1
  if prepared.precondition is not None:
    u = jax.tree.map(lambda p, v: jax.lax.rsqrt(p) * v, prepared.precondition, v1)
  transformation = settings.method.optimizer.make()
  eta = settings.method.optimizer.step_size_now(context.opt_state, context.step)

  def optimizer_step(d: PyTree) -> PyTree:
    updates, _ = transformation.update(d, context.opt_state, params)
    return jax.tree.map(lambda x: -x / eta, updates)

  if context.arrays is None:
    return Inputs(loss, params, batch, u, prepared.grad, optimizer_step)
  n = batching.num_examples(context.arrays)
  size = settings.batch_size or n

  def draw(key: jax.Array) -> PyTree:
    if size == n:
      return context.arrays
    return batching.take(context.arrays, jax.random.choice(key, n, (size,), replace=False))
  return Inputs(loss, params, batch, u, prepared.grad, optimizer_step, draw, size == n)


def stages(forward: Forward, output_loss: OutputLoss, settings: MeasureSettings
           ) -> tuple[Callable, Callable, Callable]:
  """The measurement around its eigen-solve (`eigensolvers.pipeline`), on the arguments
  `(params, context, batch, state, key)`: `prepare` with the start vector `state["v1"]` and the
  solver's key, the measured Hessian (the loss, w, the batch and the preconditioner), and
  `finish`."""
  loss = lambda context: objective(forward, output_loss, settings, context)

  def before(params, context, batch, state, key):
    return (prepare(loss(context), settings, params, context, batch), state["v1"],
            jax.random.split(key)[0])

  def hessian(args, prepared):
    params, context, batch, _, _ = args
    return loss(context).loss, params, batch, prepared.precondition

  def after(args, prepared, solved):
    params, context, batch, state, key = args
    return finish(loss(context), settings, (params, context, batch), state, key, prepared,
                  solved)
  return before, hessian, after


def measure(forward: Forward, output_loss: OutputLoss, settings: MeasureSettings,
            params: PyTree, context: Context, batch: PyTree, state: dict, key: jax.Array
            ) -> tuple[Record, dict]:
  """Returns the record (see module doc) and the next measurement state (`init_state`): the
  principal eigenvector v_1 (a params pytree, in the operator's coordinates) and the curvature
  kinds' states. One pure function: `prepare`, the eigen-solver, `finish` (`stages`).

  `state["v1"]` warm-starts the eigen-solver (the previous measurement's v_1; zeros for a
  random start drawn from `key`).
  """
  with jax.default_matmul_precision(PRECISION):
    return eigensolvers.pipeline(*stages(forward, output_loss, settings), settings.solver)(
        params, context, batch, state, key)


def make_measure(forward: Forward, output_loss: OutputLoss, settings: MeasureSettings
                 ) -> Callable[[PyTree, Context, PyTree, dict, jax.Array], tuple[Record, dict]]:
  """`measure` compiled once for this forward pass, loss and settings (`eigensolvers.compiled`):
  `(params, context, batch, state, key) -> (record, next state)`.

  Everything that changes between measurements is an argument, so later measurements with new
  values of the same shapes reuse the compiled functions. Static facts (the kind of eigenvalue,
  the operator, the edge's formula) are added to the record on the host.
  """
  static = {"eigenvalue_kind": eigenvalue_kind(settings),
            "operator": "preconditioned_hessian" if settings.preconditioned else "hessian",
            "edge_label": settings.edge_label()}
  compiled = eigensolvers.compiled(*stages(forward, output_loss, settings), settings.solver)

  def run(params: PyTree, context: Context, batch: PyTree, state: dict, key: jax.Array
          ) -> tuple[Record, dict]:
    with jax.default_matmul_precision(PRECISION):
      record, new_state = compiled(params, context, batch, state, key)
    return {**record, **static}, new_state
  return run
