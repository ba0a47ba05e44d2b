"""The batches of a streamed training set (`Problem.stream`): each step's batch comes from the
stream, placed on the mesh (`Prefetcher.batch`, which `components.components` is given), instead
of being gathered from arrays held on the devices.

* Placement: every process hands jax its own slice of step s's batch (`stream_order`: the
  p-th of P equal, consecutive parts of the global batch) and
  `jax.make_array_from_process_local_data` assembles the global batch, sharded along the mesh's
  axis as every batch is (`devices.Placement.sharded`): row for row the batch one process
  reading it whole would place.
* Prefetch: while step s runs, a background thread takes step s + 1's batch from the stream and
  places it (`Prefetcher`); asking for any other step restarts the stream there (random access).
* The step: the training step of `components` with a full-batch order (no gather), given the
  placed batch as its `arrays`.
* Measurements: the fixed measured set (`train_arrays`), placed once.
* Checkpoints keep the stream's position (`data.stream.position`); a resumed run checks it
  (`data.stream.position_problem`).
"""

import concurrent.futures
from typing import Any, Optional

import jax
import numpy as np

from sam_edge.data import stream
from sam_edge.pytree import PyTree
from sam_edge.run import devices


class Prefetcher:
  """Step s's placed batch on request, the next step's prepared meanwhile (module doc)."""

  def __init__(self, training: stream.TrainingStream, place: devices.Placement):
    self.training, self.place = training, place
    self._pool = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="stream")
    self._batches: Optional[Any] = None          # the host iterator
    self._next_step: Optional[int] = None        # the step it yields next
    self._pending: Optional[tuple[int, concurrent.futures.Future]] = None

  def _read(self, step: int) -> PyTree:
    """The global batch of `step` from this process's slice (module doc), sharded."""
    if self._next_step != step:
      self._close_iterator()
      self._batches = self.training.batches(step)
    local = jax.tree.map(np.asarray, next(self._batches))
    self._next_step = step + 1
    size = self.training.order.batch_size
    return jax.tree.map(lambda x: jax.make_array_from_process_local_data(
        self.place.sharded, x, (size,) + x.shape[1:]), local)

  def batch(self, step: int) -> PyTree:
    """The placed global batch of `step`; then step + 1's is prepared in the background."""
    pending, self._pending = self._pending, None
    placed = pending[1].result() if pending is not None else None   # another step's: let it
    if pending is None or pending[0] != step:                      # finish before the iterator
      placed = self._read(step)                                    # moves
    self._pending = (step + 1, self._pool.submit(self._read, step + 1))
    return placed

  def _close_iterator(self) -> None:
    if self._batches is not None:
      stream.close(self._batches)
    self._batches = None

  def close(self) -> None:
    """Stops the background thread and grain's workers."""
    if self._pending is not None:
      self._pending[1].cancel()
    self._pool.shutdown(wait=True)
    self._pending = None                         # the batch read ahead, released
    self._close_iterator()
