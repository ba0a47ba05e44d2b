"""Wires a problem (data + model + loss) into the loop, measurements, raw data and plots.

Both entry points build a `Problem` and call `run`. Outputs are never lost: the raw pickle is
rewritten (atomically) after every measurement, the PDFs every few minutes, and both once more
when the run ends for any reason: time limit, step cap, divergence, SIGINT or SIGTERM.
"""

import dataclasses
import signal
import sys
import time
from typing import Any, Callable, Optional

import jax
import jax.numpy as jnp
import optax

from sam_edge import batching, checkpoints, loop, measure, plots, records, steps

PyTree = Any

EXIT_CODES = {"interrupted": 130, "terminated": 143}
PLOT_EVERY_S = 300.0


@dataclasses.dataclass(frozen=True)
class Outputs:
  """Output paths (None: don't write)."""
  eigs_curve: Optional[str] = None
  eigs_se_only: Optional[str] = None
  alignment_curve: Optional[str] = None
  loss_curve: Optional[str] = None
  raw_data: Optional[str] = None


@dataclasses.dataclass(frozen=True)
class RunSettings:
  """Everything a run needs besides its problem."""
  rho: float
  step_size: float
  batch_size: int
  seed: int
  measure: measure.MeasureSettings
  loop: loop.LoopSettings
  outputs: Outputs
  title: str
  checkpoint_dir: Optional[str] = None
  resume: bool = False


@dataclasses.dataclass(frozen=True)
class Problem:
  """What an entry point contributes: a loss on device-resident data, and its test metric."""
  loss_fn: steps.LossFn                               # (params, batch) -> mean loss
  params: PyTree                                       # initial parameters
  train_arrays: dict                                   # device arrays, leading axis = examples
  evaluate: Callable[[PyTree], dict]                   # params -> {"test_error": x} etc.
  report: Callable[[dict], str]                        # evaluation -> "Test error: x"
  description: dict = dataclasses.field(default_factory=dict)   # e.g. parameter count


def keys(seed: int) -> dict[str, jax.Array]:
  """The run's independent PRNG streams, all from --seed."""
  init, data, measure_key = jax.random.split(jax.random.PRNGKey(seed), 3)
  return {"init": init, "data": data, "measure": measure_key}


def make_train_step(loss_fn: steps.LossFn, optimizer: optax.GradientTransformation, rho: float,
                    batch_size: int) -> Callable:
  """Jitted `(state, arrays, data_key) -> (state, loss)`: draws the step's batch on device, then
  takes one SAM (ρ > 0) or gradient-descent step. The old state is donated."""
  def train_step(state, arrays, data_key):
    batch = batching.batch_at(arrays, data_key, state.step, batch_size)
    return steps.sam_update(loss_fn, optimizer, rho, state, batch)
  return jax.jit(train_step, donate_argnums=0)


def components(problem: Problem, settings: RunSettings, run_keys: dict) -> loop.Components:
  """The jitted pieces of one run (each compiled once)."""
  optimizer = optax.sgd(settings.step_size)
  return loop.Components(
      update=make_train_step(problem.loss_fn, optimizer, settings.rho, settings.batch_size),
      measure=measure.make_measure(problem.loss_fn, settings.measure),
      batch=jax.jit(lambda arrays, key, step: batching.batch_at(arrays, key, step,
                                                                settings.batch_size)),
      train_arrays=problem.train_arrays, data_key=run_keys["data"],
      measure_key=run_keys["measure"])


def raw_data(config: dict, progress: loop.Progress, final: dict) -> dict:
  """The pickled dict: plain Python values only."""
  return {"config": dict(config), "records": progress.records, "losses": progress.losses,
          "final": final}


class Writer:
  """Writes the pickle after every record and the PDFs at most every PLOT_EVERY_S seconds."""

  def __init__(self, outputs: Outputs, title: str, config: dict, progress: loop.Progress,
               extra: tuple[str, ...] = ()):
    self.outputs, self.title, self.config, self.progress = outputs, title, config, progress
    self.extra = list(extra)        # further places worth naming at the end (checkpoints)
    self.last_plot = time.perf_counter()

  def pickle(self, final: dict) -> None:
    if self.outputs.raw_data:
      self._guarded(self.outputs.raw_data, lambda: records.write_raw(
          self.outputs.raw_data, raw_data(self.config, self.progress, final)))

  def plots(self, final: dict) -> None:
    self._guarded("the PDFs", lambda: plots.write_all_plots(
        raw_data(self.config, self.progress, final), title=self.title,
        eigs_curve_output=self.outputs.eigs_curve, eigs_se_only_output=self.outputs.eigs_se_only,
        alignment_curve_output=self.outputs.alignment_curve,
        loss_curve_output=self.outputs.loss_curve))
    self.last_plot = time.perf_counter()

  @staticmethod
  def _guarded(what: str, write: Callable[[], None]) -> None:
    """A failed write (folder removed, disk full) is reported and training goes on; the previous
    complete file stays (writes are atomic) and the next write tries again."""
    try:
      write()
    except OSError as e:
      print(f"warning: could not write {what}: {e}", file=sys.stderr, flush=True)

  def on_record(self, record: dict) -> None:
    self.pickle({})
    if time.perf_counter() - self.last_plot >= PLOT_EVERY_S:
      self.plots({})

  def where(self) -> str:
    paths = [p for p in dataclasses.astuple(self.outputs) if p] + self.extra
    return ", ".join(paths) if paths else "nowhere (every output is off)"


class SignalsToStop:
  """Context: SIGINT and SIGTERM ask the loop to stop after the current step."""

  def __init__(self, stop: loop.StopFlag):
    self.stop = stop

  def __enter__(self):
    self.saved = {}
    for sig, reason in ((signal.SIGINT, "interrupted"), (signal.SIGTERM, "terminated")):
      self.saved[sig] = signal.signal(sig, lambda sig, frame, r=reason: self.request(sig, r))
    return self

  def request(self, sig: int, reason: str) -> None:
    """The first signal asks for a clean stop; a second one of the same kind acts as usual
    (Ctrl-C twice raises KeyboardInterrupt at once)."""
    self.stop.set(reason)
    signal.signal(sig, signal.default_int_handler if sig == signal.SIGINT else signal.SIG_DFL)

  def __exit__(self, *exc):
    for sig, handler in self.saved.items():
      signal.signal(sig, handler)


def run(settings: RunSettings, build_problem: Callable[[jax.Array], Problem], config: dict,
        log: Callable[[str], None] = print) -> tuple[dict, int]:
  """Builds the problem, trains, evaluates, writes every output; returns (raw dict, exit code)."""
  stop = loop.StopFlag()
  with SignalsToStop(stop):
    run_keys = keys(settings.seed)
    problem = build_problem(run_keys["init"])
    progress = loop.Progress()
    state = steps.init_state(problem.params, optax.sgd(settings.step_size))
    v_prev = jax.tree.map(jnp.zeros_like, problem.params)
    checkpointer = checkpoints.Checkpointer(settings.checkpoint_dir) if settings.checkpoint_dir else None
    if checkpointer and settings.resume and checkpointer.latest_step() is not None:
      state, v_prev, progress, _ = checkpointer.restore(state, v_prev)
      log(f"resuming from the checkpoint of step {int(state.step)} in "
          f"{checkpointer.directory} ({len(progress.records)} measurements so far)")
    save = (lambda s, v, p: checkpointer.save(s, v, p, config)) if checkpointer else None
    writer = Writer(settings.outputs, settings.title, config, progress,
                    extra=(f"checkpoints in {settings.checkpoint_dir}",) if checkpointer else ())
    parts = components(problem, settings, run_keys)
    try:
      state, v_prev, reason = loop.run_loop(parts, state, v_prev, progress, settings.loop, stop,
                                            on_record=writer.on_record, on_checkpoint=save,
                                            log=log)
    except BaseException as e:          # an unexpected error: keep what was measured, then fail
      final = {"stopped_because": f"error: {type(e).__name__}: {e}",
               "train_time": progress.train_time, "elapsed": progress.elapsed,
               "measurements": len(progress.records), **problem.description}
      writer.pickle(final)
      writer.plots(final)
      log(f"run failed ({type(e).__name__}); kept {len(progress.records)} measurements in "
          f"{writer.where()}")
      raise
    if checkpointer:
      if reason != "diverged":           # a diverged state is not worth resuming
        save(state, v_prev, progress)
      checkpointer.close()
    evaluation = problem.evaluate(state.params)
    final = {"steps": int(state.step), "stopped_because": reason,
             "train_time": progress.train_time, "elapsed": progress.elapsed,
             "measurements": len(progress.records), **problem.description, **evaluation}
    if reason == "diverged":
      final["diverged_at_step"] = progress.losses["step"][-1]
    writer.pickle(final)
    writer.plots(final)
    code = EXIT_CODES.get(reason, 0)
    log(f"stopped ({reason}) after {final['steps']} steps and {len(progress.records)} "
        f"measurements; outputs: {writer.where()}")
    log(problem.report(evaluation))
  return raw_data(config, progress, final), code
