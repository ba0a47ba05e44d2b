"""Wires a problem (data + model + loss) into the loop, measurements, raw data and plots.

Both entry points build a `Problem` and call `run`. Outputs are never lost: the raw pickle is
rewritten (atomically) after every measurement, the PDFs every few minutes, and both once more
when the run ends for any reason: time limit, step cap, divergence, SIGINT or SIGTERM.
"""

import dataclasses
from typing import Any, Callable, Optional

import jax
import numpy as np
import optax

from sam_edge import (batching, checkpoints, devices, environment, errors, locks, loop,
                      measure, optimizers, outputs, steps, supervisor)
from sam_edge.outputs import Outputs

PyTree = Any

@dataclasses.dataclass(frozen=True)
class RunSettings:
  """Everything a run needs besides its problem."""
  batch_size: int
  seed: int
  optimizer: optimizers.OptimizerSettings
  sam: steps.SamSettings
  measure: measure.MeasureSettings
  loop: loop.LoopSettings
  outputs: Outputs
  title: str
  checkpoint_dir: Optional[str] = None
  resume: bool = False
  tensorboard_dir: Optional[str] = None
  num_devices: Optional[int] = None        # the first N devices (all by default)
  measure_examples: Optional[int] = None   # measure on the first N training examples


@dataclasses.dataclass(frozen=True)
class Problem:
  """What an entry point contributes: a loss on device-resident data, and its test metric.

  The losses take `(params, model_state, batch, constants)`: `model_state` is what the training
  step changes besides the parameters (BatchNorm statistics; `{}` if none) and `constants` what
  it never changes (e.g. the linearised model's expansion point; `{}` if none). Both are jit
  arguments, never baked into a compiled function.
  """
  loss_fn: measure.TrainLoss                           # -> (mean loss, new model_state)
  params: PyTree                                       # initial parameters
  train_arrays: dict                    # host arrays, leading axis = examples (placed by run)
  evaluate: Callable[[PyTree, PyTree], dict]           # (params, model_state) -> {"test_error": x}
  report: Callable[[dict], str]                        # evaluation -> "Test error: x"
  description: dict = dataclasses.field(default_factory=dict)   # e.g. parameter count
  model_state: PyTree = dataclasses.field(default_factory=dict)
  constants: PyTree = dataclasses.field(default_factory=dict)
  augment: Optional[Callable[[PyTree, jax.Array, jax.Array], PyTree]] = None
  # (batch, data_key, step) -> the training batch (e.g. random crops); measurements see the
  # batch as it is
  compute_loss: Optional[measure.TrainLoss] = None     # the update's loss (e.g. in bfloat16);
  # default loss_fn. Measurements always use loss_fn (float32).

  def measured_loss(self) -> measure.HessianLoss:
    """The loss a measurement differentiates: loss_fn's value (float32, this batch's own
    BatchNorm statistics)."""
    return lambda params, model_state, batch, constants: self.loss_fn(
        params, model_state, batch, constants)[0]


def keys(seed: int) -> dict[str, jax.Array]:
  """The run's independent PRNG streams, all from --seed."""
  init, data, measure_key = jax.random.split(jax.random.PRNGKey(seed), 3)
  return {"init": init, "data": data, "measure": measure_key}


def make_train_step(problem: Problem, optimizer: optax.GradientTransformation,
                    sam: steps.SamSettings, batch_size: int,
                    place: devices.Placement) -> Callable:
  """Jitted `(state, arrays, data_key, constants) -> (state, loss)`: draws the step's batch on
  device (augmented if the problem says so), sharded along the mesh, then takes one step of SAM
  in front of the base optimizer (the base optimizer alone when ρ = 0); the new state stays
  replicated. The old state is donated."""
  compute_loss = problem.compute_loss or problem.loss_fn

  def train_step(state, arrays, data_key, constants):
    batch = place.constrain_batch(batching.batch_at(arrays, data_key, state.step, batch_size))
    if problem.augment is not None:
      batch = problem.augment(batch, data_key, state.step)
    loss_fn = lambda p, b: compute_loss(p, state.model_state, b, constants)
    new_state, loss = steps.sam_update(loss_fn, optimizer, sam, state, batch)
    return place.constrain_replicated(new_state), loss
  return jax.jit(train_step, donate_argnums=0)


def make_state_measure(problem: Problem, settings: measure.MeasureSettings) -> Callable:
  """`(state, batch, measure_state, key) -> (record, next measure_state)`:
  `measure.make_measure` reading the training state."""
  run = measure.make_measure(problem.loss_fn, problem.measured_loss(), settings)
  constants = problem.constants

  def from_state(state: steps.TrainState, batch, measure_state, key):
    context = measure.Context(state.model_state, state.opt_state, state.step, constants)
    return run(state.params, context, batch, measure_state, key)
  return from_state


def measure_batches(problem: Problem, settings: RunSettings, place: devices.Placement
                    ) -> Callable:
  """`(arrays, key, step) -> the batch a measurement at `step` uses`: the step's training batch
  (un-augmented, as the reference), or the first --measure_examples training examples, placed
  once."""
  if settings.measure_examples:
    n = settings.measure_examples
    first = jax.tree.map(lambda a: np.asarray(a[:n]), problem.train_arrays)
    fixed = place.shard(first) if n % place.size == 0 else place.replicate(first)
    return lambda arrays, key, step: fixed
  return jax.jit(lambda arrays, key, step: place.constrain_batch(
      batching.batch_at(arrays, key, step, settings.batch_size)))


def place_arrays(problem: Problem, settings: RunSettings, place: devices.Placement) -> PyTree:
  """The training arrays on the mesh: sharded when every step uses them whole (full batch),
  replicated when steps gather batches from them."""
  full_batch = batching.num_examples(problem.train_arrays) == settings.batch_size
  return (place.shard if full_batch else place.replicate)(problem.train_arrays)


def components(problem: Problem, settings: RunSettings, run_keys: dict,
               place: devices.Placement) -> loop.Components:
  """The jitted pieces of one run (each compiled once), with its arrays placed on the mesh."""
  update = make_train_step(problem, settings.optimizer.make(), settings.sam, settings.batch_size,
                           place)
  constants = place.replicate(problem.constants)
  problem = dataclasses.replace(problem, constants=constants)
  return loop.Components(
      update=lambda state, arrays, key: update(state, arrays, key, constants),
      measure=make_state_measure(problem, settings.measure),
      batch=measure_batches(problem, settings, place),
      train_arrays=place_arrays(problem, settings, place), data_key=run_keys["data"],
      measure_key=run_keys["measure"],
      evaluate=lambda state: problem.evaluate(state.params, state.model_state))


def _sound_step(directory: str, log: Callable[[str], None]) -> Optional[int]:
  """The step of the newest checkpoint in `directory` that restores (None if there is none);
  unsound newer ones are moved aside by process 0, each with a line saying why."""
  sound = checkpoints.newest_sound(directory)
  for step, reason in sound.skipped:
    where = (f"moved to {checkpoints.quarantine(directory, step)}" if devices.is_writer()
             else "left to process 0 to move aside")
    log(f"skipping the checkpoint of step {step}: it cannot be restored ({reason}); {where}")
  if sound.step is None and sound.skipped:
    raise errors.InputError(f"--resume: no checkpoint in {directory} can be restored (see the "
                            "lines above)")
  return sound.step


def _restore(checkpointer: checkpoints.Checkpointer, step: int, state: steps.TrainState,
             measure_state: PyTree, log: Callable[[str], None]):
  """(state, measure_state, progress) of checkpoint `step`."""
  state, measure_state, progress, _ = checkpointer.restore(state, measure_state, step=step)
  log(f"resuming from the checkpoint of step {int(state.step)} in {checkpointer.directory} "
      f"({len(progress.records)} measurements so far)")
  return state, measure_state, progress


def run(settings: RunSettings, build_problem: Callable[[jax.Array], Problem], config: dict,
        log: Callable[[str], None] = print) -> tuple[dict, int]:
  """Builds the problem, trains, evaluates, writes every output; returns (raw dict, exit code).

  The work runs under `supervisor.run`: signals stop it promptly in every phase (see there)."""
  return supervisor.run(lambda sup: _run(settings, build_problem, config, log, sup))


def _run(settings: RunSettings, build_problem: Callable[[jax.Array], Problem], config: dict,
         log: Callable[[str], None], sup: supervisor.Supervisor) -> tuple[dict, int]:
  env = environment.describe()
  lock = (locks.FolderLock(settings.checkpoint_dir)
          if settings.checkpoint_dir and devices.is_writer() else None)
  if lock:
    try:
      lock.acquire()
    except RuntimeError as e:
      raise errors.InputError(f"--checkpoint_dir={settings.checkpoint_dir}: {e}") from None
    sup.cleanup = lock.release
  try:
    return _train_and_write(settings, build_problem, config, log, sup, env)
  finally:
    if lock:
      lock.release()


def _train_and_write(settings: RunSettings, build_problem: Callable[[jax.Array], Problem],
                     config: dict, log: Callable[[str], None], sup: supervisor.Supervisor,
                     env: dict) -> tuple[dict, int]:
  place = devices.placement(settings.num_devices)
  mesh = place.describe()
  env = {**env, "mesh": mesh}
  log(f"mesh: {place.size} {mesh['platform']} device(s) along '{devices.AXIS}'"
      + (f" on {jax.process_count()} processes" if jax.process_count() > 1 else ""))
  sup.phase = "loading the data"
  run_keys = keys(settings.seed)
  problem = build_problem(run_keys["init"])
  too_big = measure.size_problems(settings.measure,
                                  sum(x.size for x in jax.tree.leaves(problem.params)))
  examples = batching.num_examples(problem.train_arrays)
  if settings.measure_examples and settings.measure_examples > examples:
    too_big.append(f"--measure_examples={settings.measure_examples} exceeds the {examples} "
                   "training examples")
  if too_big:
    raise errors.InputError("; ".join(too_big))
  sup.phase = "setting up"
  progress = loop.Progress()
  state = place.replicate(steps.init_state(problem.params, settings.optimizer.make(),
                                           problem.model_state))
  measure_state = place.replicate(measure.init_state(settings.measure, problem.params))
  resume_step = (_sound_step(settings.checkpoint_dir, log)
                 if settings.checkpoint_dir and settings.resume else None)
  checkpointer = (checkpoints.Checkpointer(settings.checkpoint_dir) if settings.checkpoint_dir
                  else None)
  if resume_step is not None:
    state, measure_state, progress = _restore(checkpointer, resume_step, state, measure_state, log)
    env = {**env, "resumed_from_step": int(state.step)}
  writer = outputs.Writer(settings.outputs if devices.is_writer() else outputs.Outputs(),
                          settings.title, config, progress, env,
                          checkpoint_dir=settings.checkpoint_dir,
                          tensorboard_dir=settings.tensorboard_dir if devices.is_writer() else None)
  sup.kept = writer.existing

  def save(s, v, p) -> None:
    outputs.guarded(f"the checkpoint of step {int(s.step)} in {settings.checkpoint_dir}",
                    lambda: checkpointer.save(s, v, p, config))

  def on_record(record: dict) -> None:
    sup.mark_computed()
    writer.on_record(record)

  def on_loss(step: int, loss: float) -> None:
    sup.mark_computed()
    writer.on_loss(step, loss)

  parts = components(problem, settings, run_keys, place)
  sup.phase = "compiling"
  log("compiling the training step and the measurement (the first step and measurement wait "
      "for it)")
  try:
    state, measure_state, reason = loop.run_loop(
        parts, state, measure_state, progress, settings.loop, sup.stop, on_record=on_record,
        on_checkpoint=save if checkpointer else None, on_loss=on_loss, log=log)
  except BaseException as e:          # an unexpected error: keep what was measured, then fail
    final = {"stopped_because": f"error: {type(e).__name__}: {e}",
             "train_time": progress.train_time, "elapsed": progress.elapsed,
             "measurements": len(progress.records), **problem.description}
    writer.pickle(final)
    writer.plots(final)
    writer.close()
    log(f"run failed ({type(e).__name__}); kept {len(progress.records)} measurements in "
        f"{writer.where()}")
    raise
  sup.phase = "writing the outputs"
  if checkpointer:
    if reason != "diverged":           # a diverged state is not worth resuming
      save(state, measure_state, progress)
    outputs.guarded(f"the checkpoints in {settings.checkpoint_dir}", checkpointer.close)
  evaluation = problem.evaluate(state.params, state.model_state)
  steps_done = int(state.step)
  if reason == "diverged":             # the first step whose training loss is not finite
    steps_done = progress.losses["step"][-1]
  final = {"steps": steps_done, "stopped_because": reason,
           "train_time": progress.train_time, "elapsed": progress.elapsed,
           "measurements": len(progress.records), **problem.description, **evaluation}
  if reason == "diverged":
    final["diverged_at_step"] = steps_done
  unconverged = sum(not r.get("converged", True) for r in progress.records)
  final["unconverged_measurements"] = unconverged
  writer.pickle(final)
  writer.plots(final)
  writer.close()
  code = supervisor.EXIT_CODES.get(reason, 0)
  how = f"diverged at step {steps_done}" if reason == "diverged" else reason
  log(f"stopped ({how}) after {steps_done} steps and {len(progress.records)} "
      f"measurements; outputs: {writer.where()}")
  if unconverged:
    log(f"warning: {unconverged} of {len(progress.records)} measurements did not converge (a "
        f"residual above --lanczos_tol·|λ1|); their points are hollow in the plots")
  log(problem.report(evaluation))
  return writer.raw(final), code
