"""The loop's clocks and the one rule that says when a scheduled thing is due.

Training time is a clock that everything else pauses: evaluations, measurements, their writes
and checkpoints run inside `Clock.paused()`, so `train_time` counts update steps alone, while
`elapsed`, the loop's wall-clock time (measurements included, as the reference's limit), runs on.
Both live in the run's `Progress`, so they go into checkpoints and a resumed run continues them.
"""

import contextlib
import dataclasses
import time
from typing import Any, Iterator, Optional


class Clock:
  """Accrues `progress.train_time` and `progress.elapsed` (module doc); `progress` is any object
  with those two float attributes, counted on from their values at construction."""

  def __init__(self, progress: Any):
    self.progress = progress
    self._start_elapsed = progress.elapsed
    self._wall0 = self._last = time.perf_counter()

  def tick(self) -> float:
    """Adds the time since the last tick to training time; returns the wall-clock now."""
    now = time.perf_counter()
    self.progress.train_time += now - self._last
    self._last = now
    self.progress.elapsed = self._start_elapsed + now - self._wall0
    return now

  @contextlib.contextmanager
  def paused(self) -> Iterator[None]:
    """Training time up to here is counted; what runs inside is not (elapsed time is)."""
    self.tick()
    try:
      yield
    finally:
      self._last = time.perf_counter()
      self.progress.elapsed = self._start_elapsed + self._last - self._wall0


@dataclasses.dataclass(frozen=True)
class Schedule:
  """Every `steps` steps (at the steps divisible by it, so first at step 0), or else every
  `seconds` of some clock since the last time (first at once when it never happened: last time
  −∞); never when both are unset or 0, and never twice at one step."""
  steps: Optional[int] = None
  seconds: Optional[float] = None

  def due(self, step: int, now: float, last_step: int, last_time: float) -> bool:
    """Whether it is due at `step`, the clock reading `now`, after the last one at
    (`last_step`, `last_time`)."""
    if step == last_step:
      return False
    if self.steps:
      return step % self.steps == 0
    return bool(self.seconds) and now - last_time >= self.seconds
