"""A run's outputs: the raw pickle after every measurement, the PDFs every few minutes and at the
end, each write atomic and a failed write only a warning (training goes on; the previous complete
file stays and the next write tries again).

The Writer remembers which outputs' newest write failed and what the pickle on disk holds, so that
a run whose final outputs (pickle, PDFs, parameters file, TensorBoard scalars, final checkpoint)
are not all written ends with NOT_WRITTEN (exit code 74, sysexits' EX_IOERR), says what was not
written and why, and never names such a file among its outputs.
"""

import contextlib
import os
import time
from typing import Callable, Optional

import jax

from sam_edge import records
from sam_edge.curvature import registry
from sam_edge.plots import run as run_figures
from sam_edge.run import checkpoints, devices, failures, loop, params_file, tensorboard

PLOT_EVERY_S = 300.0
NOT_WRITTEN = 74               # the exit code of a run whose final outputs are not all written
# The failures' keys: a file's is FILE + its path; the checkpoints' and TensorBoard's are fixed.
FILE, CHECKPOINT, BOARD = "file:", "checkpoint", "board"


def raw_data(config: dict, progress: loop.Progress, final: dict, env: dict) -> dict:
  """The pickled dict: plain Python values only. A non-empty `final` (the run's end) gains
  `records_sha256` (`records.records_sha256` of the records and losses); while the run goes on
  `final` is {}."""
  if final:
    final = {**final,
             records.RECORDS_SHA256: records.records_sha256(progress.records, progress.losses)}
  return {"config": dict(config), "records": progress.records, "losses": progress.losses,
          "evaluations": progress.evaluations, "final": final, "environment": env}


class Writer:
  """Writes the pickle after every record and the PDFs at most every PLOT_EVERY_S seconds; keeps
  the failed writes (`failures.Failures`) and what the pickle on disk holds."""

  def __init__(self, outputs: dict[str, str], title: str, config: dict, progress: loop.Progress,
               env: dict, checkpoint_dir: Optional[str] = None,
               tensorboard_dir: Optional[str] = None):
    self.outputs, self.title, self.config, self.progress = outputs, title, config, progress
    self.env, self.checkpoint_dir, self.tensorboard_dir = env, checkpoint_dir, tensorboard_dir
    self.board = None
    self.written: set[str] = set()          # the paths this run has written
    self.failures = failures.Failures()
    self.pickled: Optional[str] = None      # what the pickle on disk holds, in words
    if tensorboard_dir:
      def open_board():
        self.board = tensorboard.Writer(tensorboard_dir)
      self.failures.attempt(BOARD, f"TensorBoard scalars in {tensorboard_dir}", open_board)
    self.last_plot = time.perf_counter()

  def raw(self, final: dict) -> dict:
    return raw_data(self.config, self.progress, final, self.env)

  def pickle(self, final: dict) -> None:
    path = self.outputs.get(records.RAW_DATA.name)
    if path:
      raw = self.raw(final)
      if self._write(path, lambda: records.write_raw(path, raw)):
        self.pickled = holds(raw)

  def params(self, task: str, step: int, params: object, model_state: object,
             **variants: object) -> None:
    """The final parameters and model state (`params_file`), with the weight variants given
    (`params_file.VARIANTS`: the moving average `ema`, the best evaluation's `best`, each
    {"params", "model_state"} or None), if `--params_output` is set."""
    path = self.outputs.get(records.PARAMS.name)
    if path:
      host = lambda tree: jax.tree.map(devices.host_copy, tree)
      kept = {name: host(tree) for name, tree in variants.items() if tree is not None}
      self._write(path, lambda: params_file.write(
          path, task, step, self.config, host(params), host(model_state), **kept))

  def plots(self, final: dict) -> None:
    """Every figure whose output is set and that has something to draw (matplotlib is imported
    here, at the first figure, not before the first step)."""
    from sam_edge.plots import figure  # pylint: disable=import-outside-toplevel
    raw = self.raw(final)
    for out in run_figures.figure_outputs(registry.KINDS):
      path = self.outputs.get(out.flag)
      if path:
        panels = out.panels(raw, self.title)
        if panels:
          self._write(path, lambda: figure.write(path, panels))
    self.last_plot = time.perf_counter()

  def _write(self, path: str, write: Callable[[], object]) -> bool:
    if self.failures.attempt(FILE + path, path, write) is not None:
      return False
    self.written.add(path)
    return True

  def checkpoint(self, step: int, save: Callable[[], object]) -> None:
    """Saves the checkpoint of `step` with `save()`; a failure is remembered until a later
    checkpoint is written."""
    self.failures.attempt(CHECKPOINT, f"the checkpoint of step {step} in {self.checkpoint_dir}",
                          save)

  def close_checkpoints(self, close: Callable[[], object]) -> None:
    """Closes the checkpointer (`close()`, which waits for what it still writes); after a failed
    save, what it raises is that fault again."""
    if CHECKPOINT not in self.failures:
      self.failures.attempt(CHECKPOINT, f"the checkpoints in {self.checkpoint_dir}", close)
      return
    with contextlib.suppress(Exception):
      close()

  def _to_board(self, what: str, write: Callable[[], object]) -> None:
    """TensorBoard writes: a failure is one warning, and the scalars stop there."""
    if self.board is not None and self.failures.attempt(
        BOARD, f"TensorBoard scalars in {self.tensorboard_dir} ({what})", write) is not None:
      self.board = None

  def on_loss(self, step: int, values: dict) -> None:
    """A step's {"loss"[, per-step scalars]}, to TensorBoard."""
    self._to_board("loss", lambda: self.board.step(step, values))

  def close(self) -> None:
    if self.board is not None:
      self._to_board("flush", self.board.close)
      self.written.add(self.tensorboard_dir)
      self.board = None

  def on_record(self, record: dict) -> None:
    self._to_board("measurement", lambda: self.board.record(record))
    self.pickle({})
    if time.perf_counter() - self.last_plot >= PLOT_EVERY_S:
      self.plots({})

  def where(self) -> str:
    """The outputs written, for the last line."""
    return ", ".join(self.existing()) or "nowhere (every output is off)"

  def existing(self) -> list[str]:
    """The outputs that exist now, each as its newest write left it (for a line at an immediate
    exit); an output whose newest write failed is not among them."""
    kept = [p for p in self.outputs.values() if p and self.wrote(p) and os.path.isfile(p)]
    if self.tensorboard_dir and self.tensorboard_dir in self.written and BOARD not in self.failures:
      kept.append(f"TensorBoard scalars in {self.tensorboard_dir}")
    steps = checkpoint_steps(self.checkpoint_dir)
    if steps:
      many = "s" * (len(steps) > 1)
      kept.append(f"checkpoint{many} of step{many} {', '.join(map(str, steps))} in "
                  f"{self.checkpoint_dir}")
    return kept

  def wrote(self, path: str) -> bool:
    """Whether `path` is an output whose newest write succeeded."""
    return path in self.written and FILE + path not in self.failures

  def newest_state(self) -> tuple[str, Optional[int]]:
    """(what on disk is the newest complete state, in words; the newest sound checkpoint's step,
    `newest_sound_step`, or None): what the pickle holds and that checkpoint."""
    said, step = [], None
    path = self.outputs.get(records.RAW_DATA.name)
    if path:
      said.append(f"the pickle {path} holds {self.pickled}" if self.pickled
                  else f"this run wrote no pickle to {path}")
    if self.checkpoint_dir:
      step = newest_sound_step(self.checkpoint_dir)
      said.append(f"the newest sound checkpoint is step {step} in {self.checkpoint_dir}"
                  if step is not None else f"no sound checkpoint is in {self.checkpoint_dir}")
    return ("; ".join(said) if said else "nothing was written"), step


def holds(raw: dict) -> str:
  """What a pickled raw dict holds, in words: "steps 0–49 and 6 measurements (unfinished)"."""
  steps, n = raw["losses"].get("step") or [], len(raw["records"])
  span = f"steps {steps[0]}–{steps[-1]}" if steps else "no step's loss"
  state = "finished" if raw["final"] else "unfinished"
  return f"{span} and {n} measurement{'s' * (n != 1)} ({state})"


def checkpoint_steps(directory: Optional[str]) -> list[int]:
  """The complete checkpoint steps in `directory` by their folders' names (Orbax renames a step
  into place only once it is whole), ascending."""
  if not directory or not os.path.isdir(directory):
    return []
  return sorted(int(n) for n in os.listdir(directory) if n.isdigit())


def newest_sound_step(directory: str) -> Optional[int]:
  """The newest checkpoint step in `directory` that reads back whole and matches its checksums,
  read-only (None if none does). With several processes, reading back is collective (orbax waits
  for every process) and only some may be here: the newest step by its folder's name, which
  orbax renames into place only once the step is whole."""
  if jax.process_count() > 1:
    steps = checkpoint_steps(directory)
    return steps[-1] if steps else None
  try:
    with checkpoints.Checkpointer(directory, read_only=True) as checkpointer:
      return next((s for s in reversed(checkpointer.all_steps())
                   if checkpoints.check_step(checkpointer, s).problem is None), None)
  except Exception:                    # an unreadable folder holds no sound step
    return None
