"""A run's outputs: the raw pickle after every measurement, the PDFs every few minutes and at the
end, each write atomic and a failed write only a warning (training goes on; the previous complete
file stays and the next write tries again)."""

import os
import sys
import time
from typing import Callable, Optional

import jax

from sam_edge import records
from sam_edge.curvature import registry
from sam_edge.run import devices, loop, params_file, tensorboard

PLOT_EVERY_S = 300.0


def raw_data(config: dict, progress: loop.Progress, final: dict, env: dict) -> dict:
  """The pickled dict: plain Python values only. A non-empty `final` (the run's end) gains
  `records_sha256` (`records.records_sha256` of the records and losses); while the run goes on
  `final` is {}."""
  if final:
    final = {**final,
             records.RECORDS_SHA256: records.records_sha256(progress.records, progress.losses)}
  return {"config": dict(config), "records": progress.records, "losses": progress.losses,
          "evaluations": progress.evaluations, "final": final, "environment": env}


def warn(line: str) -> None:
  print(f"warning: {line}", file=sys.stderr, flush=True)


class Writer:
  """Writes the pickle after every record and the PDFs at most every PLOT_EVERY_S seconds."""

  def __init__(self, outputs: dict[str, str], title: str, config: dict, progress: loop.Progress,
               env: dict, checkpoint_dir: Optional[str] = None,
               tensorboard_dir: Optional[str] = None):
    self.outputs, self.title, self.config, self.progress = outputs, title, config, progress
    self.env = env
    self.checkpoint_dir = checkpoint_dir
    self.tensorboard_dir = tensorboard_dir
    self.board = None
    if tensorboard_dir:
      def open_board():
        self.board = tensorboard.Writer(tensorboard_dir)
      guarded(f"TensorBoard scalars in {tensorboard_dir}", open_board)
    self.written: set[str] = set()          # the paths this run has written
    self.last_plot = time.perf_counter()

  def raw(self, final: dict) -> dict:
    return raw_data(self.config, self.progress, final, self.env)

  def pickle(self, final: dict) -> None:
    path = self.outputs.get(records.RAW_DATA.name)
    if path:
      self._write(path, lambda: records.write_raw(path, self.raw(final)))

  def params(self, task: str, step: int, params: object, model_state: object) -> None:
    """The final parameters and model state (`params_file`), if `--params_output` is set."""
    path = self.outputs.get(records.PARAMS.name)
    if path:
      host = lambda tree: jax.tree.map(devices.host_copy, tree)
      self._write(path, lambda: params_file.write(path, task, step, self.config, host(params),
                                                  host(model_state)))

  def plots(self, final: dict) -> None:
    """Every figure whose output is set and that has something to draw (matplotlib is imported
    here, at the first figure, not before the first step)."""
    from sam_edge.plots import figure  # pylint: disable=import-outside-toplevel
    raw = self.raw(final)
    for out in registry.figure_outputs():
      path = self.outputs.get(out.flag)
      if path:
        panels = out.panels(raw, self.title)
        if panels:
          self._write(path, lambda: figure.write(path, panels))
    self.last_plot = time.perf_counter()

  def _write(self, path: str, write: Callable[[], object]) -> None:
    if guarded(path, write):
      self.written.add(path)

  def _to_board(self, what: str, write: Callable[[], object]) -> None:
    """TensorBoard writes: a failure is one warning, and the scalars stop there."""
    if self.board is not None and not guarded(f"TensorBoard scalars ({what})", write):
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
    """The outputs that exist now (for a line at an immediate exit)."""
    kept = [p for p in self.outputs.values() if p and p in self.written and os.path.isfile(p)]
    if self.tensorboard_dir and self.tensorboard_dir in self.written:
      kept.append(f"TensorBoard scalars in {self.tensorboard_dir}")
    if self.checkpoint_dir and os.path.isdir(self.checkpoint_dir):
      steps = sorted(int(n) for n in os.listdir(self.checkpoint_dir) if n.isdigit())
      if steps:
        kept.append(f"checkpoints of steps {', '.join(map(str, steps))} in {self.checkpoint_dir}")
    return kept


def guarded(what: str, write: Callable[[], object]) -> bool:
  """Runs `write`; a failure is one warning line naming `what`, and False."""
  try:
    write()
    return True
  except Exception as e:       # a failed write (folder removed, disk full, ...) costs that write
    message = " ".join(str(e).split())
    warn(f"could not write {what}: {type(e).__name__}: {message[:300]}")
    return False
