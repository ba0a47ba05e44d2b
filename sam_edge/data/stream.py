"""The streaming input pipeline (`--data_pipeline=stream`): grain over a random-access source of
{"image": encoded bytes or uint8 pixels, "label": int} records (TFDS's ArrayRecord files,
`stream_sources`, or any sequence of such records), decoded and augmented on the host in worker
processes, batch by batch in the order of `stream_order`. No jax: the run places the batches.

The stream of this process is grain's `MapDataset.range(k0, ...)` of its local example numbers
k = s B/P + i (local example i of step s), mapped to the stored example and its global position
(`StreamOrder.local_example`), read, decoded and transformed (`Transform`), and batched B/P at
a time. Because the map is random access, the stream starting at step s0 (k0 = s0 B/P) is
built directly, and its position is the step: what a checkpoint keeps (`position`) and a resumed
run checks (`position_problem`). With `workers` > 0 grain's `mp_prefetch` spreads whole batches
over that many processes (batch s to worker s mod W) and hands them back in order; with 0 the
batches are made in the calling thread.

Held-out splits and the fixed measured set are read in the same way, from a list of stored
indices, with the evaluation transform (`listed_batches`).
"""

import dataclasses
import os
import signal
from typing import Any, Iterator, Optional, Sequence

import numpy as np

from sam_edge.data import host_augment, parent_death, stream_order

LOCAL_EXAMPLES = 1 << 50          # the stream's end: never reached
POSITION_KIND = "stream"


@dataclasses.dataclass(frozen=True)
class Transform:
  """A record -> {"image": uint8 [H, W, C], "label": int32}: decoded (to `channels` when set);
  with `image_size` S the training crop of `host_augment` (`train`, from the example's generator,
  `stream_order.example_rng(seed, g)`) or its centre crop; without it the image as stored."""
  image_size: Optional[int] = None
  train: bool = False
  seed: int = 0
  channels: Optional[int] = None

  def __call__(self, record: dict, position: int) -> dict:
    image = host_augment.decode(record["image"], self.channels)
    if self.image_size:
      if self.train:
        rng = stream_order.example_rng(self.seed, position)
        image = host_augment.train_crop(image, self.image_size, rng)
      else:
        image = host_augment.centre_crop(image, self.image_size)
    return {"image": np.ascontiguousarray(image), "label": np.int32(record["label"])}


@dataclasses.dataclass(frozen=True)
class _Streamed:
  """k -> this process's k-th training example (module doc); picklable for grain's workers."""
  source: Any
  order: stream_order.StreamOrder
  transform: Transform

  def __call__(self, k: int) -> dict:
    index, position = self.order.local_example(k)
    return self.transform(self.source[index], position)


@dataclasses.dataclass(frozen=True)
class _Listed:
  """k -> the example stored at `indices[k]` (its position k; past the end, the last one)."""
  source: Any
  indices: Sequence[int]
  transform: Transform

  def __call__(self, k: int) -> dict:
    k = min(k, len(self.indices) - 1)
    return self.transform(self.source[int(self.indices[k])], k)


def _iterate(dataset: Any, batch_size: int, workers: int) -> Iterator[dict]:
  """Batches of `batch_size` (the last one may be short) of the MapDataset `dataset`, made in
  `workers` processes (0: in the calling thread)."""
  import grain  # pylint: disable=import-outside-toplevel
  batched = dataset.batch(batch_size)
  if not workers:
    return iter(batched.to_iter_dataset(grain.ReadOptions(num_threads=0,
                                                          prefetch_buffer_size=0)))
  from absl import flags  # pylint: disable=import-outside-toplevel
  if not flags.FLAGS.is_parsed():      # grain reads its own flags from absl's global FlagValues,
    flags.FLAGS.mark_as_parsed()       # which the entry points (FlagValues of their own) leave
  options = grain.MultiprocessingOptions(num_workers=workers, per_worker_buffer_size=2)
  return iter(batched.to_iter_dataset(grain.ReadOptions(num_threads=1, prefetch_buffer_size=1))
              .mp_prefetch(options, worker_init_fn=worker_init))


def worker_init(worker_index: int, worker_count: int) -> None:
  """In each of grain's worker processes: ignore SIGINT and SIGTERM, which the training process
  answers by closing the workers (a Ctrl-C reaches the terminal's whole process group, and a
  scheduler may signal every process of a job: a worker killed under a step waiting for its
  batch would turn a clean stop into a failed run), and, on Linux, die with the training process
  (`PR_SET_PDEATHSIG`), which may end without closing them (SIGKILL, an immediate exit)."""
  del worker_index, worker_count
  parent = os.getppid()
  signal.signal(signal.SIGINT, signal.SIG_IGN)
  signal.signal(signal.SIGTERM, signal.SIG_IGN)
  parent_death.die_with_parent(parent, signal.SIGKILL)


def training_batches(source: Any, order: stream_order.StreamOrder, transform: Transform,
                     first_step: int, workers: int) -> Iterator[dict]:
  """This process's batches {"image": uint8 [B/P, H, W, C], "label": int32 [B/P]} of steps
  first_step, first_step + 1, ... (module doc)."""
  import grain  # pylint: disable=import-outside-toplevel
  b = order.local_batch_size
  ks = grain.MapDataset.range(first_step * b, LOCAL_EXAMPLES)
  return _iterate(ks.map(_Streamed(source, order, transform)), b, workers)


def listed_batches(source: Any, indices: Sequence[int], transform: Transform, batch_size: int,
                   workers: int = 0) -> Iterator[dict]:
  """The examples stored at `indices`, in that order, `batch_size` at a time (the last batch
  short when `batch_size` does not divide their number). The grain stream behind it never ends
  (a place past the list reads its last example again) and is closed after the last batch: its
  worker processes, reaching the end of a finite stream, would leave the shared memory of their
  batches behind."""
  import grain  # pylint: disable=import-outside-toplevel
  ks = grain.MapDataset.range(LOCAL_EXAMPLES)
  batches = _iterate(ks.map(_Listed(source, np.asarray(indices), transform)), batch_size, workers)
  return _first(batches, len(indices), batch_size)


def _first(batches: Iterator[dict], count: int, batch_size: int) -> Iterator[dict]:
  """The batches holding the first `count` examples of `batches` (the last one cut short), then
  `batches` closed."""
  try:
    for start in range(0, count, batch_size):
      batch = next(batches)
      yield batch if count - start >= batch_size else {k: v[:count - start]
                                                        for k, v in batch.items()}
  finally:
    close(batches)


def close(batches: Iterator[dict]) -> None:
  """Stops an iterator of `_iterate` or `listed_batches` and its worker processes (if any)."""
  stop = getattr(batches, "close", None)
  if stop is not None:
    stop()


def read_examples(source: Any, indices: Sequence[int], transform: Transform) -> dict:
  """The examples stored at `indices` as one batch, read in this process."""
  batches = listed_batches(source, indices, transform, max(len(indices), 1))
  try:
    return next(batches)
  finally:
    close(batches)


@dataclasses.dataclass(frozen=True)
class TrainingStream:
  """What a streamed run reads its training batches from: the source, the order (this process's
  part of it), the training transform and the number of worker processes."""
  source: Any
  order: stream_order.StreamOrder
  transform: Transform
  workers: int

  def batches(self, first_step: int) -> Iterator[dict]:
    """This process's batches of steps first_step, first_step + 1, ... (`training_batches`)."""
    return training_batches(self.source, self.order, self.transform, first_step, self.workers)


def position(order: stream_order.StreamOrder, step: int) -> dict:
  """What a checkpoint of step s keeps of the stream: where it goes on (the next step, s) and
  what fixes the order (N, B, the seed), so that a resumed run sees the batches an uninterrupted
  one sees."""
  return {"kind": POSITION_KIND, "next_step": int(step), "num_examples": order.num_examples,
          "batch_size": order.batch_size, "seed": order.seed}


def position_problem(saved: Optional[dict], order: stream_order.StreamOrder,
                     step: int) -> Optional[str]:
  """Why a checkpoint of step s whose stream position is `saved` cannot resume this stream
  (None if it can; a checkpoint of the in-memory pipeline or from before streams holds none and
  resumes, the order being a pure function of (seed, step))."""
  if not saved or saved.get("kind") != POSITION_KIND:
    return None
  expected = position(order, step)
  wrong = [f"{k} {saved.get(k)} (now {v})" for k, v in expected.items() if saved.get(k) != v]
  return ("its input stream stood at " + ", ".join(wrong)) if wrong else None
