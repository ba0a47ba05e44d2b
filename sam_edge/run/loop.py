"""The time-limited training loop: step, measure on a schedule, stop cleanly.

Each iteration: stop if asked to (signal, step cap, wall-clock limit); measure if the schedule
says so; take one update step. The host waits for step t − 1 while step t runs (one step in
flight), which keeps the clock honest, reads each loss once, and stops on the first non-finite
loss. `time` in records is *training* time (measurements, checkpoints and plots excluded); the
limit applies to the loop's wall-clock time, measurements included (as in the reference).
Measurements use their own keys and never change the parameters or batches.
"""

import bisect
import dataclasses
import math
import time
from typing import Any, Callable, Optional

import jax

from sam_edge import records
from sam_edge.curvature import registry
from sam_edge.optim import update
from sam_edge.pytree import PyTree
from sam_edge.run import clock


def append_losses(losses: dict, step: int, values: dict) -> None:
  """Appends step `step`'s per-step values ({"loss": L, ...}) to `losses` ({"step": [...], key:
  [...]}), whose lists stay equally long: a key first seen after earlier steps (a run resumed
  from a checkpoint written before the key existed) holds NaN for those steps."""
  earlier = len(losses["step"])
  losses["step"].append(step)
  for key, value in values.items():
    losses.setdefault(key, [math.nan] * earlier).append(value)


@dataclasses.dataclass(frozen=True)
class LoopSettings:
  """When to measure and when to stop."""
  time_limit_s: float
  measure_every_steps: Optional[int] = None   # a step schedule (first at step 0), or
  measure_gap_s: Optional[float] = None       # training seconds between measurements; None: never
  max_steps: Optional[int] = None
  progress_every_s: float = 10.0
  checkpoint_every_s: Optional[float] = None
  eval_every_steps: Optional[int] = None      # test metrics every N steps (first at step 0)


@dataclasses.dataclass
class Progress:
  """Host-side state of a run besides the parameters: all of it goes into checkpoints."""
  records: list = dataclasses.field(default_factory=list)
  losses: dict = dataclasses.field(default_factory=lambda: {"step": [], "loss": []})
  train_time: float = 0.0          # seconds spent in update steps
  elapsed: float = 0.0             # wall-clock seconds of the loop, measurements included
  last_measure_step: int = -1
  last_measure_time: float = -math.inf
  evaluations: list = dataclasses.field(default_factory=list)   # {step, time, test_..., seconds}
  last_eval_step: int = -1
  stream_position: dict = dataclasses.field(default_factory=dict)
  # a streamed run's input position at the checkpoint's step (`data.stream.position`); {} else


@dataclasses.dataclass(frozen=True)
class Components:
  """The jitted pieces a loop drives (built once per run)."""
  update: Callable[..., tuple[update.TrainState, PyTree, Any]]
  # (state, measure_state, arrays, key, step) -> (state, measure_state, the loss or {"loss",
  # other per-step scalars}); measure_state carries what steps update (the per-step tracker)
  measure: Callable[[update.TrainState, PyTree, PyTree, jax.Array], tuple[dict, PyTree]]
  # (state, batch, measure_state, key) -> (record, next measure_state); pure
  batch: Callable[[PyTree, jax.Array, int], PyTree]          # (arrays, key, step) -> batch
  train_arrays: PyTree
  data_key: jax.Array
  measure_key: jax.Array
  evaluate: Optional[Callable[[update.TrainState], dict]] = None   # -> {"test_error": x, ...}
  steps_per_epoch: Optional[int] = None   # ⌊training examples / B⌋: records carry their epoch
  decide: Optional[Callable[[update.TrainState, list], tuple[update.TrainState, Optional[str]]]] \
      = None      # (state, evaluations) -> (state, why stop or None), after each evaluation


@dataclasses.dataclass(eq=False)
class StopFlag:
  """Set by a signal handler; the loop checks it once per step."""
  reason: Optional[str] = None

  def set(self, reason: str) -> None:
    if self.reason is None:
      self.reason = reason


def format_evaluation(e: dict) -> str:
  """The one printed line of an evaluation: the trained weights' metrics, then the moving
  average's (`ema_`)."""
  shown = sorted((k for k, v in e.items() if k not in ("step", "time", "seconds", "epoch")
                  and isinstance(v, float)), key=lambda k: k.startswith("ema_"))
  values = " | ".join(f"{k} {e[k]:.6g}" for k in shown)
  epoch = f" (epoch {e['epoch']:.4g})" if "epoch" in e else ""
  return (f"evaluate step {e['step']}{epoch} | t {e['time']:.1f}s | {values} | "
          f"{e['seconds']:.2f}s")


def format_record(r: dict) -> str:
  """The one printed line of a measurement."""
  eigs = ", ".join(f"{v:.6g}" for v in r["eigenvalues"])
  kind = " (magnitudes)" if r.get("eigenvalue_kind") == "magnitude" else ""
  line = (f"measure step {r['step']} | t {r['time']:.1f}s | λ{kind} {eigs}"
          f" | 2/η {r['two_over_eta']:.6g} | SAM-edge {r['sam_edge']:.6g}")
  if r.get("edge") is not None and r.get("edge_label") not in (None, "2/η", "SAM-edge"):
    line += f" | {r['edge_label']} {r['edge']:.6g}"
  line += (f" | ‖g‖ {r['grad_norm']:.4g} | loss {r['loss']:.6g}"
           f" | |cos(g,v1)| {r['g_alignment']:.3f} | |cos(gSAM,v1)| {r['sg_alignment']:.3f}"
           f" | residual {max(r['residuals']):.2e} | HVPs {r['hvps']} | {r['seconds']:.2f}s")
  line += registry.line(r)
  if not r.get("converged", True):
    line += " | NOT CONVERGED: a residual is above the tolerance"
  return line


@dataclasses.dataclass(frozen=True)
class Hooks:
  """What the loop calls besides its components. `on_record(entry)` follows each measurement
  and each evaluation; `on_loss(step, values)` each step's {"loss": training loss[, per-step
  scalars such as "lambda1_per_step"]} read back from the device; `on_checkpoint(state,
  measure_state, progress)` every `checkpoint_every_s` (None: never); `log` each printed line.
  All of them run outside training time."""
  on_record: Callable[[dict], None] = lambda entry: None
  on_checkpoint: Optional[Callable[[update.TrainState, PyTree, Progress], None]] = None
  on_loss: Callable[[int, dict], None] = lambda step, values: None
  log: Callable[[str], None] = print


def run_loop(components: Components, state: update.TrainState, measure_state: PyTree,
             progress: Progress, settings: LoopSettings, stop: StopFlag,
             hooks: Hooks = Hooks()) -> tuple[update.TrainState, PyTree, str]:
  """Trains until a stop condition; returns (state, measure_state, stopped_because), where
  measure_state holds the measurements' warm starts (e.g. the last principal eigenvector).

  `stopped_because` is one of: time_limit, max_steps, diverged, early_stopping (`decide`), or the
  StopFlag's reason.
  `progress` is updated in place (records, evaluations, losses, clocks); every value `on_loss`
  receives is appended to `progress.losses[key]`.
  """
  return _Loop(components, state, measure_state, progress, settings, hooks).run(stop)


class _Loop:
  """One call of `run_loop`: the state it carries between the phases of an iteration."""

  def __init__(self, components: Components, state: update.TrainState, measure_state: PyTree,
               progress: Progress, settings: LoopSettings, hooks: Hooks):
    self.c, self.settings, self.hooks, self.progress = components, settings, hooks, progress
    self.state, self.measure_state = state, measure_state
    self.step = int(state.step)
    self.pending = None                          # (step, loss on device) of the step in flight
    self.clock = clock.Clock(progress)
    self.measurements = clock.Schedule(settings.measure_every_steps, settings.measure_gap_s)
    self.evaluations = clock.Schedule(settings.eval_every_steps if components.evaluate else None)
    self.progress_log = clock.Schedule(seconds=settings.progress_every_s)
    self.checkpoints = clock.Schedule(seconds=settings.checkpoint_every_s
                                      if hooks.on_checkpoint else None)
    self.last_log = self.last_checkpoint = time.perf_counter()
    self.logged = (self.step, progress.train_time)         # for the steps/s of the next line

  def run(self, stop: StopFlag) -> tuple[update.TrainState, PyTree, str]:
    p = self.progress
    # A run resumed at the step of its last evaluation (one that stopped early and is run again
    # with --resume) decides on it again, as the uninterrupted run did, instead of training on.
    reason = self._decide() if p.evaluations and p.last_eval_step == self.step else None
    while reason is None:
      reason = self._limit(stop) or self._observe() or self._train()
    if reason != "diverged":
      reason = self._settle() or reason
    self.clock.tick()
    return self.state, self.measure_state, reason

  def _decide(self) -> Optional[str]:
    """The decision on the last evaluation (`Components.decide`, paused): why stop, or None."""
    if self.c.decide is None:
      return None
    with self.clock.paused():
      self.state, reason = self.c.decide(self.state, self.progress.evaluations)
    return reason

  def _limit(self, stop: StopFlag) -> Optional[str]:
    """Why the loop must stop before the next step, if it must."""
    if stop.reason:
      return stop.reason
    if self.settings.max_steps is not None and self.step >= self.settings.max_steps:
      return "max_steps"
    return "time_limit" if self.progress.elapsed >= self.settings.time_limit_s else None

  def _observe(self) -> Optional[str]:
    """The evaluation and the measurement due at this step, outside training time."""
    p = self.progress
    if self.evaluations.due(self.step, p.train_time, p.last_eval_step, -math.inf):
      reason = self._scheduled(self._evaluate, p.evaluations, format_evaluation) or self._decide()
      if reason:
        return reason
    if self.measurements.due(self.step, p.train_time, p.last_measure_step, p.last_measure_time):
      return self._scheduled(self._measure, p.records, format_record)
    return None

  def _evaluate(self) -> dict:
    """The held-out metrics, and `train_loss` and `train_error`: the means of the per-step
    training losses and errors of the steps since the last evaluation (each on its own batch,
    at the parameters before its update): the training figures of the batches seen since then
    (none at the first evaluation)."""
    values = dict(self.c.evaluate(self.state))
    p = self.progress
    steps = p.losses["step"]
    first = bisect.bisect_left(steps, p.last_eval_step)          # the steps ascend
    for key, name in (("loss", "train_loss"), ("train_error", "train_error")):
      column = p.losses.get(key, [])
      seen = [x for x in column[first:] if not math.isnan(x)]
      if p.last_eval_step >= 0 and len(column) == len(steps) and seen:
        values[name] = sum(seen) / len(seen)
    p.last_eval_step = self.step
    return values

  def _measure(self) -> dict:
    batch = self.c.batch(self.c.train_arrays, self.c.data_key, self.step)
    # Wait for the device: `seconds` is the measurement's whole cost, not its dispatch.
    record, self.measure_state = jax.block_until_ready(self.c.measure(
        self.state, batch, self.measure_state, jax.random.fold_in(self.c.measure_key, self.step)))
    self.progress.last_measure_step = self.step
    self.progress.last_measure_time = self.progress.train_time     # paused: the record's `time`
    return record

  def _scheduled(self, take: Callable[[], dict], into: list,
                 line: Callable[[dict], str]) -> Optional[str]:
    """Settles the step in flight ('diverged' if its loss is not finite), then, paused, `take()`s
    a measurement or an evaluation, appends it `into` its list, prints its line and hands it to
    `on_record`."""
    reason = self._settle()
    if reason:
      return reason
    jax.block_until_ready(self.state)            # training time ends here
    with self.clock.paused():
      t = time.perf_counter()
      values = take()
      seconds = time.perf_counter() - t
      entry = {"step": self.step, "time": self.progress.train_time,     # plain Python numbers
               **records.to_plain(jax.device_get(values)), "seconds": seconds}
      if self.c.steps_per_epoch:
        entry["epoch"] = self.step / self.c.steps_per_epoch
      into.append(entry)
      self.hooks.log(line(entry))
      self.hooks.on_record(entry)
    return None

  def _settle(self) -> Optional[str]:
    """Waits for the step in flight; records its loss; 'diverged' if it is not finite."""
    if self.pending is None:
      return None
    s, out = self.pending
    self.pending = None
    values = ({k: float(v) for k, v in jax.device_get(out).items()} if isinstance(out, dict)
              else {"loss": float(out)})
    append_losses(self.progress.losses, s, values)
    self.hooks.on_loss(s, values)
    if not math.isfinite(values["loss"]):
      self.hooks.log(f"training loss is {values['loss']} at step {s}: stopping (diverged)")
      return "diverged"
    return None

  def _train(self) -> Optional[str]:
    """One update step (its loss is read at the next settle), then the progress line and the
    checkpoint when due."""
    c = self.c
    self.state, self.measure_state, out = c.update(self.state, self.measure_state,
                                                   c.train_arrays, c.data_key, self.step)
    reason = self._settle()
    self.pending = (self.step, out)
    self.step += 1
    now = self.clock.tick()
    if self.progress_log.due(self.step, now, -1, self.last_log):
      p, (step0, time0) = self.progress, self.logged
      rate = (self.step - step0) / max(p.train_time - time0, 1e-9)
      last_loss = f" | loss {p.losses['loss'][-1]:.6g}" if p.losses["loss"] else ""
      self.hooks.log(f"step {self.step} | {rate:.3g} steps/s{last_loss}"
                     f" | {max(self.settings.time_limit_s - p.elapsed, 0):.0f}s left")
      self.last_log, self.logged = now, (self.step, p.train_time)
    if reason is None and self.checkpoints.due(self.step, now, -1, self.last_checkpoint):
      reason = self._settle()
      if reason is None:
        with self.clock.paused():
          self.hooks.on_checkpoint(self.state, self.measure_state, self.progress)
      self.last_checkpoint = time.perf_counter()
    return reason
