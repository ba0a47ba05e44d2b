"""Wires a problem (data + model + loss) into the loop, measurements, raw data and plots.

Both entry points build a `Problem` and call `run`. Outputs are never lost: the raw pickle is
rewritten (atomically) after every measurement, the PDFs every few minutes, and both once more
when the run ends for any reason: time limit, step cap, divergence, SIGINT or SIGTERM; the final
parameters (`--params_output`) are written then, once.
"""

import contextlib
import dataclasses
from typing import Callable, Optional

import jax

from sam_edge import errors
from sam_edge.curvature import measure
from sam_edge.data import batching, stream
from sam_edge.optim import update
from sam_edge.pytree import PyTree
from sam_edge.run import (
  checkpoints,
  closing,
  components,
  devices,
  environment,
  init_params,
  locks,
  loop,
  monitor,
  outputs,
  streamed,
  supervisor,
)
from sam_edge.run.problem import Problem, keys
from sam_edge.run.settings import RunSettings


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


def _restore(checkpointer: checkpoints.Checkpointer, step: int, problem: Problem,
             state: update.TrainState, measure_state: PyTree, directory: str,
             log: Callable[[str], None]):
  """(state, measure_state, progress) of checkpoint `step`; refused in one line when the step no
  longer matches its checksums when read again, or (a streamed run) when its stream position does
  not fit this run's stream (`data.stream.position_problem`)."""
  try:
    state, measure_state, progress, _ = checkpointer.restore(state, measure_state, step=step)
  except checkpoints.Unsound as e:
    raise errors.InputError(f"--resume: {e}") from None
  restored = int(state.step)
  log(f"resuming from the checkpoint of step {restored} in {checkpointer.directory} "
      f"({len(progress.records)} measurements so far)")
  why = problem.stream and stream.position_problem(progress.stream_position, problem.stream.order,
                                                   restored)
  if why:
    raise errors.InputError(f"--resume: the checkpoint of step {restored} in {directory} does not "
                            f"fit this run: {why}")
  return state, measure_state, progress


def run(settings: RunSettings, build_problem: Callable[[jax.Array], Problem], config: dict,
        log: Callable[[str], None] = print) -> tuple[dict, int]:
  """Builds the problem, trains, evaluates, writes every output; returns (raw dict, exit code).

  The work runs under `supervisor.run`: signals stop it promptly in every phase (see there)."""
  def work(sup: supervisor.Supervisor) -> tuple[dict, int]:
    env = environment.describe()
    with contextlib.ExitStack() as held:
      if settings.checkpoint_dir and devices.is_writer():
        lock = locks.FolderLock(settings.checkpoint_dir)
        try:
          held.enter_context(lock)
        except RuntimeError as e:
          raise errors.InputError(f"--checkpoint_dir={settings.checkpoint_dir}: {e}") from None
        sup.cleanup = lock.release
      return _train_and_write(settings, build_problem, config, log, sup, env)
  return supervisor.run(work)


@dataclasses.dataclass
class _Prepared:
  """A run set up and ready to train: what `_train_and_write` hands from set-up to the end."""
  problem: Problem
  state: update.TrainState
  measure_state: PyTree
  progress: loop.Progress
  checkpointer: Optional[checkpoints.Checkpointer]
  writer: outputs.Writer
  parts: loop.Components
  hooks: loop.Hooks
  prefetcher: Optional[streamed.Prefetcher]      # a streamed run's batches (closed at the end)


def _train_and_write(settings: RunSettings, build_problem: Callable[[jax.Array], Problem],
                     config: dict, log: Callable[[str], None], sup: supervisor.Supervisor,
                     env: dict) -> tuple[dict, int]:
  run = _set_up(settings, build_problem, config, log, sup, env)
  sup.phase = "compiling"
  log("compiling the training step and the measurement (the first step and measurement wait "
      "for it)")
  try:
    run.state, run.measure_state, reason = loop.run_loop(
        run.parts, run.state, run.measure_state, run.progress, settings.loop, sup.stop, run.hooks)
  except BaseException as e:          # an unexpected error: keep what was measured, then fail
    _write(run, _final(run, f"error: {type(e).__name__}: {e}"))
    log(f"run failed ({type(e).__name__}); kept {len(run.progress.records)} measurements in "
        f"{run.writer.where()}")
    raise
  finally:
    if run.prefetcher:                # stops the input stream's threads and workers
      run.prefetcher.close()
  sup.phase = "writing the outputs"
  if run.checkpointer:
    if reason != "diverged":           # a diverged state is not worth resuming
      run.hooks.on_checkpoint(run.state, run.measure_state, run.progress)
    run.writer.close_checkpoints(run.checkpointer.close)
    if reason == "diverged":           # it needs no newer one: a failed save before it is no loss
      run.writer.failures.forget(outputs.CHECKPOINT)
  run.state, best = monitor.finish(settings.monitor, run.state, run.progress.evaluations, log)
  evaluation = {**components.evaluation(run.problem, run.state), **best}
  final = _final(run, reason, evaluation)
  _write(run, final, settings.task)
  code = _report(run, final, evaluation, settings, log)
  return run.writer.raw(final), code


def _set_up(settings: RunSettings, build_problem: Callable[[jax.Array], Problem], config: dict,
            log: Callable[[str], None], sup: supervisor.Supervisor, env: dict) -> _Prepared:
  """The devices, the problem (started from --init_params when given; checked against the
  measurement's limits), the state (restored when resuming: a checkpoint wins over
  --init_params), the writer and the compiled pieces."""
  place = devices.placement(settings.num_devices)
  mesh = place.describe()
  env = {**env, "mesh": mesh}
  log(f"mesh: {place.size} {mesh['platform']} device(s) along '{devices.AXIS}'"
      + (f" on {jax.process_count()} processes" if jax.process_count() > 1 else ""))
  sup.phase = "loading the data"
  run_keys = keys(settings.seed)
  problem = build_problem(run_keys["init"])
  if settings.init_params:
    problem, line = init_params.initialise(problem, settings.init_params)
    log(line)
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
  state = place.replicate(update.init_state(problem.params, settings.method.optimizer.make(),
                                           problem.model_state, settings.method.sam,
                                           average=settings.ema_decay is not None,
                                           keep_best=settings.monitor.keeps_best))
  warning = monitor.followed(settings.monitor, problem.held_out)
  if warning:
    log(warning)
  measure_state = place.replicate(measure.init_state(settings.measure, problem.params))
  resume_step = (_sound_step(settings.checkpoint_dir, log)
                 if settings.checkpoint_dir and settings.resume else None)
  checkpointer = (checkpoints.Checkpointer(settings.checkpoint_dir) if settings.checkpoint_dir
                  else None)
  if resume_step is not None:
    state, measure_state, progress = _restore(checkpointer, resume_step, problem, state,
                                              measure_state, settings.checkpoint_dir, log)
    env = {**env, "resumed_from_step": int(state.step)}
  writer = outputs.Writer(dict(settings.outputs) if devices.is_writer() else {},
                          settings.title, config, progress, env,
                          checkpoint_dir=settings.checkpoint_dir,
                          tensorboard_dir=settings.tensorboard_dir if devices.is_writer() else None)
  sup.kept = writer.existing

  def save(s, v, p) -> None:
    if problem.stream is not None:
      p.stream_position = stream.position(problem.stream.order, int(s.step))
    writer.checkpoint(int(s.step), lambda: checkpointer.save(s, v, p, config))

  def computed(write: Callable[..., None]) -> Callable[..., None]:
    def marked(*args) -> None:          # something worth keeping exists from now on
      sup.mark_computed()
      write(*args)
    return marked

  hooks = loop.Hooks(on_record=computed(writer.on_record),
                     on_checkpoint=save if checkpointer else None,
                     on_loss=computed(writer.on_loss), log=log)
  prefetcher = streamed.Prefetcher(problem.stream, place) if problem.stream is not None else None
  parts = components.components(problem, settings, run_keys, place,
                                prefetcher.batch if prefetcher else None)
  if settings.monitor.active:
    parts = dataclasses.replace(parts, decide=lambda s, evaluations: monitor.decide(
        settings.monitor, s, evaluations, log))
  return _Prepared(problem, state, measure_state, progress, checkpointer, writer, parts, hooks,
                   prefetcher)


def _final(run: _Prepared, reason: str, evaluation: Optional[dict] = None) -> dict:
  """The run's `final`: how it stopped, its clocks and size, and after a run that did not fail
  (`evaluation` given) its steps, test metrics and unconverged measurements."""
  progress = run.progress
  final = {"stopped_because": reason, "train_time": progress.train_time,
           "elapsed": progress.elapsed, "measurements": len(progress.records),
           **run.problem.description}
  if evaluation is None:
    return final
  steps = int(run.state.step)
  if reason == "diverged":             # the first step whose training loss is not finite
    steps = progress.losses["step"][-1]
  final = {"steps": steps, **final, **evaluation}
  if run.parts.steps_per_epoch:
    final["steps_per_epoch"] = run.parts.steps_per_epoch
    final["epochs"] = steps / run.parts.steps_per_epoch
  if reason == "diverged":
    final["diverged_at_step"] = steps
  final["unconverged_measurements"] = sum(not r.get("converged", True)
                                          for r in progress.records)
  return final


def _write(run: _Prepared, final: dict, task: Optional[str] = None) -> None:
  """The final outputs, once: the pickle, the parameters (when `task` is given: a run that did
  not fail), the figures; then the writer is closed."""
  run.writer.pickle(final)
  if task is not None:
    best = final.get("best_evaluation")
    run.writer.params(task, best["step"] if best and best.get("restored") else final["steps"],
                      run.state.params, run.state.model_state, ema=run.state.ema or None,
                      best=run.state.best if best else None)
  run.writer.plots(final)
  run.writer.close()


def _report(run: _Prepared, final: dict, evaluation: dict, settings: RunSettings,
            log: Callable[[str], None]) -> int:
  """The closing lines of a run; returns its exit code (outputs.NOT_WRITTEN when its final
  outputs are not all written)."""
  writer, records = run.writer, run.progress.records
  unwritten = writer.failures.lines()
  reason, steps = final["stopped_because"], final["steps"]
  how = f"diverged at step {steps}" if reason == "diverged" else reason
  log(f"stopped ({how}) after {steps} steps and {len(records)} measurements; outputs: "
      f"{writer.where()}")
  if final["unconverged_measurements"]:
    log(f"warning: {final['unconverged_measurements']} of {len(records)} measurements did not "
        "converge (a residual above --lanczos_tol·|λ1|); their points are hollow in the plots")
  log(run.problem.report(evaluation))
  averaged = {k[len(components.EMA_PREFIX):]: v for k, v in evaluation.items()
              if k.startswith(components.EMA_PREFIX)}
  if averaged:
    log(f"moving average of the weights (--ema_decay): {run.problem.report(averaged)}")
  written = {flag: path for flag, path in dict(settings.outputs).items() if writer.wrote(path)}
  for sentence in (closing.edge_sentence(records), closing.figure_sentence(written)):
    if sentence:
      log(sentence)
  if not unwritten:
    return supervisor.EXIT_CODES.get(reason, 0)
  # Final outputs not all written: which and why, and the newest complete state on disk.
  log(f"error: {len(unwritten)} of the final outputs could not be written: "
      + "; ".join(unwritten))
  state, step = writer.newest_state()
  again = (" Free space (or make the folder writable) and run the same command with --resume: "
           "it goes on from that checkpoint." if step is not None else "")
  log(f"error: the newest complete state on disk: {state}.{again}")
  return outputs.NOT_WRITTEN
