"""Wires a problem (data + model + loss) into the loop, measurements, raw data and plots.

Both entry points build a `Problem` and call `run`. Outputs are never lost: the raw pickle is
rewritten (atomically) after every measurement, the PDFs every few minutes, and both once more
when the run ends for any reason: time limit, step cap, divergence, SIGINT or SIGTERM; the final
parameters (`--params_output`) are written then, once.
"""

from typing import Any, Callable, Optional

import jax

from sam_edge import errors
from sam_edge.curvature import measure
from sam_edge.data import batching
from sam_edge.optim import update
from sam_edge.run import (
  checkpoints,
  closing,
  components,
  devices,
  environment,
  locks,
  loop,
  outputs,
  supervisor,
)
from sam_edge.run.problem import Problem, keys
from sam_edge.run.settings import RunSettings

PyTree = Any


def _sound_step(directory: str, log: Callable[[str], None]) -> Optional[int]:
  """The step of the newest sound checkpoint in `directory` (one that restores whole and matches
  its checksums; None if there is none); unsound newer ones are moved aside by process 0, each
  with a line naming the step and what is wrong (e.g. the array that does not match)."""
  sound = checkpoints.newest_sound(directory)
  for step, reason in sound.skipped:
    where = (f"moved to {checkpoints.quarantine(directory, step)}" if devices.is_writer()
             else "left to process 0 to move aside")
    log(f"skipping the checkpoint of step {step}: it is unsound ({reason}); {where}")
  if sound.step is None and sound.skipped:
    raise errors.InputError(f"--resume: no checkpoint in {directory} is sound (see the lines "
                            "above)")
  if sound.note:
    log(f"note: the checkpoint of step {sound.step} {sound.note}; resuming from it")
  return sound.step


def _restore(checkpointer: checkpoints.Checkpointer, step: int, state: update.TrainState,
             measure_state: PyTree, log: Callable[[str], None]):
  """(state, measure_state, progress) of checkpoint `step`; a step that no longer matches its
  checksums when read again is refused in one line."""
  try:
    state, measure_state, progress, _ = checkpointer.restore(state, measure_state, step=step)
  except checkpoints.Unsound as e:
    raise errors.InputError(f"--resume: {e}") from None
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
  state = place.replicate(update.init_state(problem.params, settings.optimizer.make(),
                                           problem.model_state, settings.sam))
  measure_state = place.replicate(measure.init_state(settings.measure, problem.params))
  resume_step = (_sound_step(settings.checkpoint_dir, log)
                 if settings.checkpoint_dir and settings.resume else None)
  checkpointer = (checkpoints.Checkpointer(settings.checkpoint_dir) if settings.checkpoint_dir
                  else None)
  if resume_step is not None:
    state, measure_state, progress = _restore(checkpointer, resume_step, state, measure_state, log)
    env = {**env, "resumed_from_step": int(state.step)}
  writer = outputs.Writer(dict(settings.outputs) if devices.is_writer() else {},
                          settings.title, config, progress, env,
                          checkpoint_dir=settings.checkpoint_dir,
                          tensorboard_dir=settings.tensorboard_dir if devices.is_writer() else None)
  sup.kept = writer.existing

  def save(s, v, p) -> None:
    writer.checkpoint(int(s.step), lambda: checkpointer.save(s, v, p, config))

  def on_record(record: dict) -> None:
    sup.mark_computed()
    writer.on_record(record)

  def on_loss(step: int, values: dict) -> None:
    sup.mark_computed()
    writer.on_loss(step, values)

  parts = components.components(problem, settings, run_keys, place)
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
    writer.close_checkpoints(checkpointer.close)
    if reason == "diverged":           # so a failed save before it is no loss
      writer.needs_no_checkpoint()
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
  writer.params(settings.task, steps_done, state.params, state.model_state)
  writer.plots(final)
  writer.close()
  unwritten = writer.failures.lines()
  code = outputs.NOT_WRITTEN if unwritten else supervisor.EXIT_CODES.get(reason, 0)
  how = f"diverged at step {steps_done}" if reason == "diverged" else reason
  log(f"stopped ({how}) after {steps_done} steps and {len(progress.records)} "
      f"measurements; outputs: {writer.where()}")
  if unconverged:
    log(f"warning: {unconverged} of {len(progress.records)} measurements did not converge (a "
        f"residual above --lanczos_tol·|λ1|); their points are hollow in the plots")
  log(problem.report(evaluation))
  written = {flag: path for flag, path in dict(settings.outputs).items()
             if writer.wrote(path)}
  for sentence in (closing.edge_sentence(progress.records), closing.figure_sentence(written)):
    if sentence:
      log(sentence)
  if unwritten:
    _say_unwritten(unwritten, writer, log)
  return writer.raw(final), code


def _say_unwritten(unwritten: list[str], writer: outputs.Writer, log: Callable[[str], None]
                   ) -> None:
  """The last lines of a run whose final outputs are not all written: which and why, and the
  newest complete state on disk (exit code outputs.NOT_WRITTEN)."""
  log(f"error: {len(unwritten)} of the final outputs could not be written: "
      + "; ".join(unwritten))
  state, step = writer.newest_state(_newest_sound_step)
  again = (" Free space (or make the folder writable) and run the same command with --resume: "
           "it goes on from that checkpoint." if step is not None else "")
  log(f"error: the newest complete state on disk: {state}.{again}")


def _newest_sound_step(directory: str) -> Optional[int]:
  """The newest checkpoint step in `directory` that reads back whole and matches its checksums,
  read-only (None if none does). With several processes, reading back is collective (orbax waits
  for every process) and only some may be here: the newest step by its folder's name, which
  orbax renames into place only once the step is whole."""
  if jax.process_count() > 1:
    steps = outputs.checkpoint_steps(directory)
    return steps[-1] if steps else None
  try:
    sound = [c.step for c in checkpoints.audit(directory) if c.problem is None]
  except Exception:                    # an unreadable folder holds no sound step
    return None
  return sound[-1] if sound else None
