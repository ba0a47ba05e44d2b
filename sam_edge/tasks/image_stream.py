"""The image-classification problem on a streamed dataset (`--data_pipeline=stream`): the network
and loss of `image_problem`, with the training set read batch by batch (`data.stream`) instead of
held in memory.

* Training batches: this process's slice of step s's batch (`stream_order`), host-augmented
  with --image_size; `--augment` still runs on the device on the streamed batch.
* Measurements: the fixed measured set, --measure_examples examples drawn from the seed
  (`stream_order.measured_indices`), un-augmented (centre-cropped with --image_size); it is also
  the problem's `train_arrays`, and the normalisation's statistics are taken over it (the
  training split is never read whole).
* Evaluations: the held-out split streamed, centre-cropped (`streamed_metrics_fn`), under the
  keys of the in-memory run.
"""

import dataclasses
from typing import Any, Callable, Optional

import jax
import jax.numpy as jnp
import numpy as np

from sam_edge import errors
from sam_edge.data import image_specs, images, normalize, stream, stream_order, stream_sources
from sam_edge.run.problem import Problem
from sam_edge.tasks import image_problem
from sam_edge.tasks.image_config import ImageConfig

EVAL_CHUNK = 500


@dataclasses.dataclass(frozen=True)
class Sources:
  """The random-access training and held-out sources of a run, the number of classes, and the
  name of the held-out split (reported under the test_ keys)."""
  train: Any
  held_out: Any
  num_classes: int
  held_out_name: str = "test"
  channels: Optional[int] = None            # the images' channels (None: as each is stored)


def open_sources(c: ImageConfig, log: Callable[[str], None]) -> Sources:
  """TFDS's ArrayRecord sources of --dataset (prepared first if needed, from --manual_dir)."""
  d = c.data
  spec = image_specs.STREAMED.get(d.dataset)
  held = spec.test_split if spec else "test"
  prepare = lambda builder: images.prepare(builder, d.dataset, d.manual_dir,
                                           images.PROBE_TIMEOUT_S, log)
  train = stream_sources.tfds_split(d.dataset, d.tfds_data_dir, "train", prepare)  # prepares
  _, shape, num_classes = stream_sources.tfds_info(d.dataset, d.tfds_data_dir)
  return Sources(train, stream_sources.tfds_split(d.dataset, d.tfds_data_dir, held, prepare),
                 num_classes, held, shape[-1])


def streamed_metrics_fn(per_example: Any, held_out: Any, transform: stream.Transform,
                        workers: int, count: int) -> Callable:
  """`[args, ...] -> [{"test_error", "test_loss"[, "test_error_top5"]}, ...]`, one per network's
  args: (1/M) Σ_i of `per_example` (`image_problem.per_example_metrics_fn`) over the first
  `count` examples of the held-out source, read and decoded once for all of them, EVAL_CHUNK at a
  time (the last chunk padded with copies of its first row, masked out)."""

  @jax.jit
  def chunk_sums(args, chunk, mask):
    return jax.tree.map(lambda v: jnp.sum(jnp.where(mask, v, 0.0)), per_example(args, chunk))

  def metrics(arg_sets: list) -> list[dict]:
    totals, chunks = [None] * len(arg_sets), stream.listed_batches(
        held_out, range(count), transform, EVAL_CHUNK, workers)
    try:
      for chunk in chunks:
        k = len(chunk["label"])
        if k < EVAL_CHUNK:                # the last chunk: padded, never a copy of a full one
          rows = np.where(np.arange(EVAL_CHUNK) < k, np.arange(EVAL_CHUNK), 0)
          chunk = {key: v[rows] for key, v in chunk.items()}
        mask = np.arange(EVAL_CHUNK) < k
        for i, args in enumerate(arg_sets):
          sums = chunk_sums(args, chunk, mask)
          totals[i] = sums if totals[i] is None else jax.tree.map(jnp.add, totals[i], sums)
    finally:
      stream.close(chunks)
    return [{f"test_{k}": float(v) / count for k, v in t.items()} for t in totals]
  return metrics


def build(c: ImageConfig, key: jax.Array, sources: Optional[Sources] = None,
          log: Callable[[str], None] = print) -> Problem:
  """The streamed Problem (module doc) of the flags, on `sources` (default: `open_sources`)."""
  sources = sources or open_sources(c, log)
  n = images.num_kept(len(sources.train), c.data.mini_training_set_num_batches, c.data.batch_size)
  m = images.num_kept(len(sources.held_out), c.data.mini_test_set_num_batches, c.data.batch_size)
  if c.data.batch_size > n:
    raise errors.InputError(f"--batch_size={c.data.batch_size} is larger than the {n} training "
                            "examples")
  try:
    order = stream_order.StreamOrder(n, c.data.batch_size, c.data.seed, jax.process_index(),
                                     jax.process_count())
  except ValueError as e:
    raise errors.InputError(f"--batch_size={c.data.batch_size}: {e}") from None
  count = c.data.measure_examples
  if count > n:
    raise errors.InputError(f"--measure_examples={count} exceeds the {n} training examples")
  log(f"measurements use a fixed set of {count} training examples drawn from the seed "
      "(--measure_examples): a stream holds no training array to draw batches from")
  evaluated = stream.Transform(c.data.image_size, channels=sources.channels)
  measured = stream.read_examples(sources.train,
                                  stream_order.measured_indices(c.data.seed, n, count), evaluated)
  preprocess = normalize.of(c.data.normalize, measured["image"],
                            images.mean_image_of(measured["image"]))
  channels = measured["image"].shape[-1]
  evaluated = dataclasses.replace(evaluated, channels=channels)
  metrics = lambda per_example: streamed_metrics_fn(per_example, sources.held_out, evaluated,
                                                    c.data.data_workers, m)
  problem = image_problem.network_problem(c, key, measured, sources.num_classes, preprocess,
                                          metrics)
  num_params = sum(x.size for x in jax.tree.leaves(problem.params))
  log(f"{c.data.dataset} (streamed, --data_workers={c.data.data_workers}): {n} training, {m} "
      f"{sources.held_out_name} examples; {c.model.nn_architecture} with {num_params} parameters")
  training = stream.TrainingStream(sources.train, order,
                                   stream.Transform(c.data.image_size, True, c.data.seed, channels),
                                   c.data.data_workers)
  return dataclasses.replace(problem, stream=training, description={
      "parameters": int(num_params), "training_examples": n, "test_examples": m})
