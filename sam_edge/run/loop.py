"""The time-limited training loop: step, measure on a schedule, stop cleanly.

Each iteration: stop if asked to (signal, step cap, wall-clock limit); measure if the schedule
says so; take one update step. The host waits for step t − 1 while step t runs (one step in
flight), which keeps the clock honest, reads each loss once, and stops on the first non-finite
loss. `time` in records is *training* time (measurements, checkpoints and plots excluded); the
limit applies to the loop's wall-clock time, measurements included (as in the reference).
Measurements use their own keys and never change the parameters or batches.
"""

import dataclasses
import math
import time
from typing import Any, Callable, Optional

import jax

from sam_edge import records
from sam_edge.curvature import registry
from sam_edge.optim import update

PyTree = Any


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


class StopFlag:
  """Set by a signal handler; the loop checks it once per step."""

  def __init__(self) -> None:
    self.reason: Optional[str] = None

  def set(self, reason: str) -> None:
    if self.reason is None:
      self.reason = reason


def measurement_due(settings: LoopSettings, progress: Progress, step: int) -> bool:
  """First at step 0, then every `measure_every_steps` steps or `measure_gap_s` training seconds."""
  if step == progress.last_measure_step:
    return False
  if settings.measure_every_steps:
    return step % settings.measure_every_steps == 0
  if settings.measure_gap_s:
    return progress.train_time - progress.last_measure_time >= settings.measure_gap_s
  return False


def evaluation_due(settings: LoopSettings, progress: Progress, step: int) -> bool:
  """At step 0 and every `eval_every_steps` steps (never twice at one step)."""
  return bool(settings.eval_every_steps) and step % settings.eval_every_steps == 0 and (
      step != progress.last_eval_step)


def format_evaluation(e: dict) -> str:
  values = " | ".join(f"{k} {v:.6g}" for k, v in e.items()
                      if k not in ("step", "time", "seconds") and isinstance(v, float))
  return f"evaluate step {e['step']} | t {e['time']:.1f}s | {values} | {e['seconds']:.2f}s"


def to_host_record(record: dict, step: int, train_time: float, seconds: float) -> dict:
  """A measurement as plain Python numbers (eigenvalues and residuals as lists)."""
  return {"step": step, "time": train_time, **records.to_plain(jax.device_get(record)),
          "seconds": seconds}


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


def run_loop(components: Components, state: update.TrainState, measure_state: PyTree,
             progress: Progress,
             settings: LoopSettings, stop: StopFlag, *,
             on_record: Callable[[dict], None] = lambda r: None,
             on_checkpoint: Optional[Callable[[update.TrainState, PyTree, Progress], None]] = None,
             on_loss: Callable[[int, dict], None] = lambda step, values: None,
             log: Callable[[str], None] = print) -> tuple[update.TrainState, PyTree, str]:
  """Trains until a stop condition; returns (state, measure_state, stopped_because), where
  measure_state holds the measurements' warm starts (e.g. the last principal eigenvector).

  `stopped_because` is one of: time_limit, max_steps, diverged, or the StopFlag's reason.
  `progress` is updated in place (records, evaluations, losses, clocks); `on_record(record)`
  follows each measurement and each evaluation, and `on_loss(step, values)` each step's
  {"loss": training loss[, per-step scalars such as "lambda1_per_step"]} read back from the
  device; every one of them is appended to `progress.losses[key]`.
  """
  c = components
  step = int(state.step)
  pending = None                                   # (step, loss on device) of the step in flight
  start_elapsed = progress.elapsed
  wall0 = time.perf_counter()
  last_tick = wall0
  last_progress_log = wall0
  last_checkpoint = wall0
  progress_steps = (step, progress.train_time)

  def clock() -> float:
    nonlocal last_tick
    now = time.perf_counter()
    progress.train_time += now - last_tick
    progress.elapsed = start_elapsed + now - wall0
    last_tick = now
    return now

  def settle() -> Optional[str]:
    """Waits for the step in flight; records its loss; 'diverged' if it is not finite."""
    nonlocal pending
    if pending is None:
      return None
    s, out = pending
    pending = None
    values = ({k: float(v) for k, v in jax.device_get(out).items()} if isinstance(out, dict)
              else {"loss": float(out)})
    loss = values["loss"]
    progress.losses["step"].append(s)
    for key, value in values.items():
      progress.losses.setdefault(key, []).append(value)
    on_loss(s, values)
    if not math.isfinite(loss):
      log(f"training loss is {loss} at step {s}: stopping (diverged)")
      return "diverged"
    return None

  def pause(fn: Callable[[], Any]) -> Any:
    """Runs `fn` outside training time."""
    nonlocal last_tick
    clock()
    result = fn()
    last_tick = time.perf_counter()
    progress.elapsed = start_elapsed + last_tick - wall0
    return result

  def quiesce() -> Optional[str]:
    """Before an evaluation or a measurement: settles the step in flight ('diverged' if its
    loss is not finite) and waits for the state, so that training time ends here."""
    reason = settle()
    if reason is None:
      jax.block_until_ready(state)
      clock()
    return reason

  reason = None
  while reason is None:
    if stop.reason:
      reason = stop.reason
    elif settings.max_steps is not None and step >= settings.max_steps:
      reason = "max_steps"
    elif progress.elapsed >= settings.time_limit_s:
      reason = "time_limit"
    if reason:
      break
    if c.evaluate is not None and evaluation_due(settings, progress, step):
      reason = quiesce()
      if reason:
        break

      def take_evaluation():
        t = time.perf_counter()
        values = c.evaluate(state)
        return {"step": step, "time": progress.train_time, **values,
                "seconds": time.perf_counter() - t}
      evaluation = pause(take_evaluation)
      progress.evaluations.append(evaluation)
      progress.last_eval_step = step
      log(format_evaluation(evaluation))
      pause(lambda: on_record(evaluation))
    if measurement_due(settings, progress, step):
      reason = quiesce()
      if reason:
        break

      def take_measurement():
        t = time.perf_counter()
        batch = c.batch(c.train_arrays, c.data_key, step)
        # Wait for the device: `seconds` is the measurement's whole cost, not its dispatch.
        record, v1 = jax.block_until_ready(
            c.measure(state, batch, measure_state, jax.random.fold_in(c.measure_key, step)))
        seconds = time.perf_counter() - t
        return to_host_record(record, step, progress.train_time, seconds), v1
      record, measure_state = pause(take_measurement)
      progress.records.append(record)
      progress.last_measure_step, progress.last_measure_time = step, progress.train_time
      log(format_record(record))
      pause(lambda: on_record(record))
    state, measure_state, out = c.update(state, measure_state, c.train_arrays, c.data_key, step)
    reason = settle()
    pending = (step, out)
    step += 1
    now = clock()
    if now - last_progress_log >= settings.progress_every_s:
      rate = (step - progress_steps[0]) / max(progress.train_time - progress_steps[1], 1e-9)
      last_loss = (f" | loss {progress.losses['loss'][-1]:.6g}" if progress.losses["loss"] else "")
      log(f"step {step} | {rate:.3g} steps/s{last_loss}"
          f" | {max(settings.time_limit_s - progress.elapsed, 0):.0f}s left")
      last_progress_log, progress_steps = now, (step, progress.train_time)
    if (on_checkpoint and settings.checkpoint_every_s is not None
        and now - last_checkpoint >= settings.checkpoint_every_s and reason is None):
      reason = settle()
      if reason is None:
        pause(lambda: on_checkpoint(state, measure_state, progress))
      last_checkpoint = time.perf_counter()
  if reason != "diverged":
    diverged = settle()
    reason = diverged or reason
  clock()
  return state, measure_state, reason
