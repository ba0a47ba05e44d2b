"""Batches drawn on the device from arrays held there, and means over chunks of them.

The shuffled order (`order.ShuffledOrder`): with N examples and batch size B (B <= N), an epoch
is ⌊N/B⌋ steps; step s uses rows perm_e[p B : (p + 1) B] with e = ⌊s / ⌊N/B⌋⌋, p = s mod ⌊N/B⌋
and perm_e a permutation of range(N) drawn from fold_in(key, e). Because the batch depends only
on (key, step), a resumed run sees the same batches as an uninterrupted one.
"""

import functools
from typing import Any

import jax
import jax.numpy as jnp

Arrays = dict[str, jax.Array]


def num_examples(arrays: Arrays) -> int:
  """N, the common leading dimension."""
  sizes = {a.shape[0] for a in jax.tree.leaves(arrays)}
  if len(sizes) != 1:
    raise ValueError(f"arrays disagree on the number of examples: {sorted(sizes)}")
  return sizes.pop()


def batch_indices(key: jax.Array, step: jax.Array, n: int, batch_size: int) -> jax.Array:
  """Row indices int32 [B] of the batch for `step` (see module doc)."""
  if not 1 <= batch_size <= n:
    raise ValueError(f"batch size {batch_size} must be between 1 and the {n} examples")
  if batch_size == n:
    return jnp.arange(n, dtype=jnp.int32)
  steps_per_epoch = n // batch_size
  epoch, position = jnp.divmod(step, steps_per_epoch)
  return jax.lax.dynamic_slice(epoch_permutation(key, epoch, n), (position * batch_size,),
                               (batch_size,))


@functools.partial(jax.jit, static_argnums=(2,))
def epoch_permutation(key: jax.Array, epoch: Any, n: int) -> jax.Array:
  """perm_e, int32 [N]: the permutation of range(N) of epoch e (module doc)."""
  return jax.random.permutation(jax.random.fold_in(key, epoch), n).astype(jnp.int32)


def take(arrays: Arrays, indices: jax.Array) -> Arrays:
  """The rows `indices` of every array."""
  return jax.tree.map(lambda a: jnp.take(a, indices, axis=0), arrays)


def chunked_mean(per_example_fn: Any, params: Any, arrays: Arrays, chunk_size: int) -> Any:
  """(1/N) Σ_i per_example_fn(params, arrays)[i] over all N rows, `chunk_size` rows at a time.

  `per_example_fn` returns [B] values, or a dict (any pytree) of them: each is averaged. The last
  chunk is padded with copies of row 0 and masked out, so every row counts exactly once.
  """
  n = num_examples(arrays)
  chunk_size = max(1, min(chunk_size, n))
  num_chunks = -(-n // chunk_size)
  rows = jnp.arange(num_chunks * chunk_size)
  valid = rows < n
  padded = take(arrays, jnp.where(valid, rows, 0))
  chunks = jax.tree.map(lambda a: a.reshape((num_chunks, chunk_size) + a.shape[1:]), padded)
  masks = valid.reshape(num_chunks, chunk_size)

  def chunk_sum(args):
    chunk, mask = args
    return jax.tree.map(lambda v: jnp.sum(jnp.where(mask, v, 0.0)), per_example_fn(params, chunk))
  return jax.tree.map(lambda sums: jnp.sum(sums) / n, jax.lax.map(chunk_sum, (chunks, masks)))


def split(batch: Arrays, size: int, *, interleave: bool = False) -> Arrays:
  """`batch` (N examples) as K = N/size pieces of `size` examples, leading axes [K, size]: piece k
  holds rows k·size .. (k + 1)·size − 1 (consecutive), or with `interleave` rows k, k + K,
  k + 2K, ... A batch sharded over devices in contiguous blocks gives every interleaved piece an
  equal share on every device. ValueError when `size` does not divide N."""
  n = num_examples(batch)
  if n % size:
    raise ValueError(f"the chunk size {size} does not divide the {n} examples")
  if not interleave:
    return jax.tree.map(lambda a: a.reshape((n // size, size) + a.shape[1:]), batch)
  return jax.tree.map(lambda a: jnp.swapaxes(a.reshape((size, n // size) + a.shape[1:]), 0, 1),
                      batch)


def chunked_loss(loss: Any, chunk_size: int, *, interleave: bool = False) -> Any:
  """`(params, batch) -> (1/K) Σ_k loss(params, batch_k)`: the mean of `loss` over the K = N/C
  pieces of C = `chunk_size` examples (`split`: consecutive, or interleaved; N/C whole; equal to
  loss(params, batch) for a loss that is a mean over equally weighted examples). The chunks are
  visited by `lax.map` with each evaluation under `jax.checkpoint`, so gradients and
  Hessian-vector products of it hold the activations of one chunk at a time, not of all N
  examples."""
  def fn(params: Any, batch: Arrays) -> jax.Array:
    chunks = split(batch, chunk_size, interleave=interleave)
    per_chunk = jax.lax.map(jax.checkpoint(lambda chunk: loss(params, chunk)), chunks)
    return jnp.mean(per_chunk)
  return fn
