"""The jitted pieces of one run, each compiled once (a training step chosen on the host per step,
`update.host_phased`, twice): the training step, the measurement reading the training state, the
measured batch, and the training arrays placed on the mesh."""

import dataclasses
from typing import Any, Callable, Optional

import jax
import jax.numpy as jnp
import numpy as np

from sam_edge.curvature import measure, tracking
from sam_edge.data import batching
from sam_edge.data import order as order_lib
from sam_edge.optim import ema, regularization, sam_steps, update
from sam_edge.optim.optimizers import OptimizerSettings
from sam_edge.optim.oracle import Oracle
from sam_edge.optim.sam import SamSettings
from sam_edge.pytree import PyTree
from sam_edge.run import devices, loop
from sam_edge.run.problem import Problem
from sam_edge.run.settings import RunSettings

EMA_PREFIX = "ema_"           # the averaged network's evaluation keys (`evaluation`)


def batch_order(problem: Problem, batch_size: int) -> Any:
  """The problem's order of examples (`data.order`), a fresh permutation every epoch unless the
  task chose another."""
  if problem.order is not None:
    return problem.order
  return order_lib.ShuffledOrder(batching.num_examples(problem.train_arrays), batch_size)


def take_batch(order: Any, arrays: PyTree, data_key: jax.Array, step: jax.Array,
               indices: Any) -> PyTree:
  """Inside jit: the step's batch: the rows `indices` (drawn on the host), or those the order
  draws on the device, or every row (full batch)."""
  if indices is None:
    indices = order.device_indices(data_key, step)
  return arrays if indices is None else batching.take(arrays, indices)


def host_indices(order: Any, step: int, data_key: jax.Array) -> Any:
  """The step's row indices when the order draws them on the host, else None."""
  return order.host_indices(step, data_key) if order.host else None


def make_train_step(problem: Problem, method: OptimizerSettings, sam: SamSettings, order: Any,
                    place: devices.Placement, *, track_hvps: int = 0,
                    ema_decay: Optional[float] = None, train_error: bool = False) -> Callable:
  """`(state, measure_state, arrays, data_key, indices, constants) -> (state, measure_state,
  out)`, jitted (`.lower` lowers it): takes the step's batch (`take_batch`; augmented if the
  problem says so), sharded along the mesh, then one step of SAM in front of the base optimizer
  `method.make()` (the base optimizer alone when ρ = 0), with the forward pass in the problem's
  compute dtype, the L2 term in the loss with --weight_decay_in_loss (`method.penalty()`,
  `regularization`), the SAM variant's random draws from the step's key (`sam_steps.step_key`)
  and, with `ema_decay`, the weights' moving average updated after the step (`ema`); the new
  state stays replicated. `out` is the loss, or with `track_hvps` {"loss", and λ1 of the step's
  Hessian (`curvature.tracking`)}, whose tracker lives in `measure_state`; with `train_error`
  (and the problem's `batch_error`; not with --accumulate_batches) `out` also holds
  "train_error", the error of the step's (augmented) batch at the step's w in the training
  pass's mode, the forward pass the loss takes (XLA computes it once). The old state is
  donated; without tracking `measure_state` is not an argument of the compiled step at all."""
  optimizer, penalty = method.make(), method.penalty()

  def step(state, measure_state, arrays, data_key, indices, constants):
    batch = place.constrain_batch(take_batch(order, arrays, data_key, state.step, indices))
    if problem.augment is not None:
      batch = problem.augment(batch, data_key, state.step)
    loss_fn = regularization.regularized(
        problem.loss_fn(state.model_state, constants, problem.compute_dtype), penalty)
    losses = regularization.regularized_examples(
        problem.example_loss_fn(state.model_state, constants, problem.compute_dtype), penalty)
    key = sam_steps.step_key(data_key, state.step)
    if track_hvps:
      new_state, tracker, out = tracking.tracked_update(
          Oracle(loss_fn, batch, sam.micro_batches, losses), optimizer, sam, state,
          measure_state["tracker"], track_hvps, (key, tracking.track_key(data_key, state.step)))
      measure_state = {**measure_state, "tracker": place.constrain_replicated(tracker)}
    else:
      new_state, out = update.sam_update(loss_fn, optimizer, sam, state, batch, key=key,
                                         example_losses=losses)
    if ema_decay:
      new_state = new_state._replace(
          ema=ema.updated(new_state.ema, new_state.params, new_state.model_state, ema_decay))
    # Not with micro-batches: one whole-batch pass would break their memory.
    if train_error and problem.batch_error and sam.micro_batches <= 1:
      outputs, _ = problem.forward(state.params, state.model_state, batch, constants,
                                   problem.compute_dtype)
      out = {**(out if isinstance(out, dict) else {"loss": out}),
             "train_error": problem.batch_error(outputs, batch)}
    return place.constrain_replicated(new_state), measure_state, out

  if track_hvps:
    return jax.jit(step, donate_argnums=(0, 1))
  # Without tracking the step never reads the measurements' state: it stays outside the
  # compiled step, which would otherwise copy it (a parameter-sized warm start) at every step.
  untracked = jax.jit(lambda state, *args: step(state, None, *args), donate_argnums=0)

  def train_step(state, measure_state, *args):
    new_state, _, out = untracked(state, *args)
    return new_state, measure_state, out
  train_step.lower = lambda state, measure_state, *args: untracked.lower(state, *args)
  return train_step


def train_steps(problem: Problem, settings: RunSettings, order: Any,
                place: devices.Placement) -> Callable[[int], Callable]:
  """`step -> the jitted training step (`make_train_step`) for that host step`
  (`update.host_phased`: one for every step, or a variant's two chosen on the host)."""
  return update.host_phased(lambda sam: make_train_step(
      problem, settings.method.optimizer, sam, order, place, track_hvps=settings.measure.track_hvps,
      ema_decay=settings.ema_decay, train_error=settings.loop.eval_every_steps is not None),
      settings.method.sam)


def evaluation(problem: Problem, state: update.TrainState) -> dict:
  """The problem's test metrics of the state's network and, with the weights' moving average
  (`ema`), those of the averaged network under the same keys prefixed `ema_` (`ema_test_error`,
  `ema_test_loss`, ...), both from one pass over the held-out data when the problem offers it
  (`Problem.evaluate_each`)."""
  if not state.ema:
    return problem.evaluate(state.params, state.model_state, problem.constants)
  nets = [(state.params, state.model_state), (state.ema["params"], state.ema["model_state"])]
  each = problem.evaluate_each or (lambda ns, k: [problem.evaluate(p, s, k) for p, s in ns])
  metrics, averaged = each(nets, problem.constants)
  return {**metrics, **{f"{EMA_PREFIX}{k}": v for k, v in averaged.items()}}


def measure_batches(problem: Problem, settings: RunSettings, order: Any,
                    place: devices.Placement) -> Callable:
  """`(arrays, key, step) -> the batch a measurement at `step` uses` (`step` a host int): the
  step's training batch (un-augmented, as the reference), or the first --measure_examples
  training examples, placed once."""
  if settings.measure_examples:
    n = settings.measure_examples
    first = jax.tree.map(lambda a: np.asarray(a[:n]), problem.train_arrays)
    fixed = place.shard(first) if n % place.size == 0 else place.replicate(first)
    return lambda arrays, key, step_: fixed
  batch = jax.jit(lambda arrays, key, step_, indices: place.constrain_batch(
      take_batch(order, arrays, key, step_, indices)))
  return lambda arrays, key, step_: batch(arrays, key, jnp.asarray(step_, jnp.int32),
                                         host_indices(order, step_, key))


def components(problem: Problem, settings: RunSettings, run_keys: dict,
               place: devices.Placement,
               batches: Optional[Callable[[int], PyTree]] = None) -> loop.Components:
  """The jitted pieces of one run (each compiled once), with its arrays placed on the mesh; for a
  streamed run (`run.streamed`) `batches(step)` is the placed batch of `step`, taken whole, and
  the measurements read the problem's fixed measured set."""
  if batches is None:
    order = batch_order(problem, settings.batch_size)
    steps_per_epoch = batching.num_examples(problem.train_arrays) // settings.batch_size
  else:
    b = problem.stream.order.batch_size
    order = order_lib.ShuffledOrder(b, b)        # the batch as given: no gather
    steps_per_epoch = problem.stream.order.steps_per_epoch
  train_step = train_steps(problem, settings, order, place)
  constants = place.replicate(problem.constants)
  problem = dataclasses.replace(problem, constants=constants)
  batch = measure_batches(problem, settings, order, place)
  if batches is None:
    # Sharded when every step uses them whole (full batch), replicated when steps gather from them.
    full_batch = batching.num_examples(problem.train_arrays) == settings.batch_size
    arrays = measured = (place.shard if full_batch else place.replicate)(problem.train_arrays)
  else:
    arrays, measured = None, batch(None, None, 0)

  def update_(state, measure_state, arrays_, key, step_):
    data = arrays_ if batches is None else batches(step_)
    return train_step(step_)(state, measure_state, data, key, host_indices(order, step_, key),
                             constants)

  measure_ = measure.make_measure(problem.forward, problem.output_loss, settings.measure)

  def measure_from_state(state, batch_, measure_state, key):
    """`measure.make_measure` reading the training state: the SAM variant's state and the SAM
    key the training step of this step draws from, and the `measured` arrays for the kinds
    that draw fresh batches."""
    context = measure.Context(state.model_state, state.opt_state, state.step, constants,
                              state.sam_state, sam_steps.step_key(run_keys["data"], state.step),
                              measured)
    return measure_(state.params, context, batch_, measure_state, key)
  return loop.Components(
      update=update_, measure=measure_from_state, batch=batch, train_arrays=arrays,
      data_key=run_keys["data"], measure_key=run_keys["measure"],
      evaluate=lambda state: evaluation(problem, state), steps_per_epoch=steps_per_epoch)
