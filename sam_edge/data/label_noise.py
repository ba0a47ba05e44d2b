"""Symmetric label noise: a fixed number of training labels replaced by other classes.

For N labels y_i in {0..K-1}, a fraction p and a key:

  m = floor(p N + 1/2)                         (round half up)
  S = perm[:m],   perm a uniform permutation of range(N) drawn from the key
  r_i ~ uniform on {1..K-1}, independently
  y'_i = (y_i + r_i) mod K  if i in S,  else y_i

so exactly m labels change, and each changed label is uniform over the K - 1 classes other than
its original. Apply it to the training split only (test labels stay clean); the key is a pure
function of the seed (`noise_key(data_key)`), so the noisy labels are fixed for a run and its
resumptions.
"""

import math

import jax
import jax.numpy as jnp

LABEL_NOISE_TAG = 0x6E6F6973  # b"nois" as an integer.


def noise_key(data_key: jax.Array) -> jax.Array:
  """fold_in(data_key, LABEL_NOISE_TAG): the key of the label noise."""
  return jax.random.fold_in(data_key, LABEL_NOISE_TAG)


def num_flipped(num_labels: int, fraction: float) -> int:
  """m = floor(fraction · N + 1/2), the number of labels replaced."""
  if not 0.0 <= fraction <= 1.0:
    raise ValueError(f"label noise fraction must be in [0, 1], got {fraction}")
  return min(num_labels, math.floor(fraction * num_labels + 0.5))


def noisy_labels(labels: jax.Array, num_classes: int, fraction: float, key: jax.Array
                 ) -> tuple[jax.Array, jax.Array]:
  """Replaces exactly `num_flipped(N, fraction)` labels by uniformly drawn other classes.

  `labels` is int [N] with values in {0..num_classes-1}, `num_classes` K >= 2 (static),
  `fraction` p in [0, 1] (static) and `key` a PRNG key, e.g. `noise_key(data_key)`. Returns
  `(labels' int32 [N], flipped bool [N])`, flipped marking the replaced labels (module doc).
  """
  if num_classes < 2:
    raise ValueError(f"label noise needs at least 2 classes, got {num_classes}")
  labels = jnp.asarray(labels, jnp.int32)
  (n,) = labels.shape
  m = num_flipped(n, fraction)
  choose_key, class_key = jax.random.split(key)
  chosen = jax.random.permutation(choose_key, n)[:m]
  flipped = jnp.zeros((n,), bool).at[chosen].set(True)
  shift = jax.random.randint(class_key, (n,), 1, num_classes, jnp.int32)
  return jnp.where(flipped, (labels + shift) % num_classes, labels), flipped
