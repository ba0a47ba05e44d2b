"""A rebuilt run's network as the between-run metrics use it: its training loss (train mode),
BatchNorm statistics recomputed on the training set, the error or loss of a split (the training
or the test set) in evaluation mode, and its softmax outputs on a probe batch or a whole split.
Every function is jitted once per `NetworkEval` (one per cell of runs sharing a network; once
per split's shapes) and reused for every parameter vector.

BatchNorm statistics of parameters w (Garipov et al.'s `update_bn`): the mean over the training
set's batches of size B (the last incomplete one dropped) of each batch's (μ, v). One train-mode
pass from zero running statistics returns s' = (1 − m)·(μ, v) with m = `resnet.BN_MOMENTUM`, so
(μ, v) = s' / (1 − m). Networks without BatchNorm have no statistics (`{}`).
"""

import jax
import jax.numpy as jnp

from sam_edge import errors
from sam_edge.data import batching
from sam_edge.models import losses, resnet
from sam_edge.pytree import PyTree
from sam_edge.run.problem import Problem

METRICS = ("error", "loss")          # what E(t) measures on a split
TOP_K = 5
CHUNK = 1000                         # examples evaluated at once


def means(p: Problem, params: PyTree, state: PyTree, constants: PyTree, arrays: batching.Arrays,
          metrics: tuple[str, ...]) -> dict[str, jax.Array]:
  """{metric: its mean over `arrays`} of the evaluation-mode outputs p.predict(params, state,
  constants, batch), for those of `metrics` among loss, error and top5 (`studies.evaluation`
  gives each formula), CHUNK examples at a time."""
  def per_example(args, batch):
    outputs = p.predict(*args, constants, batch)
    each = {"loss": lambda: losses.per_example(p.output_loss, outputs, batch),
            "error": lambda: losses.misclassified(outputs, batch["label"]),
            "top5": lambda: losses.not_in_top_k(outputs, batch["label"], TOP_K)}
    return {m: each[m]() for m in metrics}
  return batching.chunked_mean(per_example, (params, state), arrays, CHUNK)


class NetworkEval:
  """The jitted pieces for one rebuilt problem (module doc). `arrays` is the training set on the
  device; `batch_size` the batch of the statistics."""

  def __init__(self, problem: Problem, batch_size: int):
    if problem.predict is None:
      raise errors.InputError("cka, curve and ensemble_error need evaluation-mode outputs, "
                              "which only image_classification runs offer (dist works for every "
                              "run)")
    self.problem = problem
    self.arrays = jax.device_put(problem.train_arrays)
    self.n = batching.num_examples(self.arrays)
    self.batch_size = max(1, min(batch_size, self.n))
    self.has_stats = bool(jax.tree.leaves(problem.model_state))
    self._splits = {"train": self.arrays}
    train_loss = problem.loss_fn(problem.model_state, problem.constants)
    # `loss` is a jit static argument of `connectivity.fit_bend`: one object per NetworkEval.
    self.loss = lambda params, batch: train_loss(params, batch)[0]
    self._stats = jax.jit(self._batch_stats)
    self._metrics = jax.jit(lambda params, state, arrays: means(
        problem, params, state, problem.constants, arrays, METRICS))
    # outputs(params, state, batch): softmax outputs [k, classes] of the k examples of `batch`
    # (e.g. `first`), in evaluation mode with the statistics `state`.
    self.outputs = jax.jit(self._softmax)
    self._probabilities = jax.jit(self._all_outputs)

  def split(self, name: str) -> batching.Arrays:
    """The arrays of split `name` on the device: "train", or a held-out split of the problem
    ("test"); InputError when the problem has no such split."""
    if name not in self._splits:
      if name not in self.problem.held_out:
        raise errors.InputError(f"the runs have no {name} split")
      self._splits[name] = jax.device_put(self.problem.held_out[name])
    return self._splits[name]

  def first(self, split: str, examples: int) -> batching.Arrays:
    """The first min(examples, N) examples of `split`."""
    return jax.tree.map(lambda a: a[:examples], self.split(split))

  def _batch_stats(self, params: PyTree) -> PyTree:
    p = self.problem
    zeros = jax.tree.map(jnp.zeros_like, p.model_state)
    steps = self.n // self.batch_size
    idx = jnp.arange(steps * self.batch_size).reshape(steps, self.batch_size)

    def one(i):
      _, new = p.forward(params, zeros, batching.take(self.arrays, i), p.constants)
      return jax.tree.map(lambda x: x / (1.0 - resnet.BN_MOMENTUM), new)
    return jax.tree.map(lambda x: jnp.mean(x, axis=0), jax.lax.map(one, idx))

  def stats(self, params: PyTree) -> PyTree:
    """The BatchNorm statistics of `params` on the training set ({} without BatchNorm)."""
    return self._stats(params) if self.has_stats else self.problem.model_state

  def measure(self, params: PyTree, metric: str = "error", split: str = "train") -> float:
    """The `metric` (error or loss) of `params` on `split` in evaluation mode, with BatchNorm
    statistics recomputed for `params` on the training set (as the taxonomy's `update_bn`)."""
    return float(self._metrics(params, self.stats(params), self.split(split))[metric])

  def _softmax(self, params: PyTree, state: PyTree, batch: batching.Arrays) -> jax.Array:
    logits = self.problem.predict(params, state, self.problem.constants, batch)
    return jax.nn.softmax(logits.astype(jnp.float32), axis=-1)

  def _all_outputs(self, params: PyTree, state: PyTree, arrays: batching.Arrays) -> jax.Array:
    n = batching.num_examples(arrays)
    size = max(1, min(CHUNK, n))
    count = -(-n // size)
    rows = jnp.minimum(jnp.arange(count * size), n - 1)   # the last chunk padded, then cut
    chunks = batching.split(batching.take(arrays, rows), size)
    probs = jax.lax.map(lambda b: self._softmax(params, state, b), chunks)
    return probs.reshape((count * size,) + probs.shape[2:])[:n]

  def probabilities(self, params: PyTree, state: PyTree, split: str) -> jax.Array:
    """softmax outputs [N, classes] of every example of `split`, in evaluation mode with the
    statistics `state`, CHUNK examples at a time."""
    return self._probabilities(params, state, self.split(split))
