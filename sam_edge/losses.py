"""Classification losses on logits [B, C] and integer labels [B]."""

from typing import Callable

import jax
import jax.numpy as jnp
import optax


def squared_error(logits: jax.Array, labels: jax.Array) -> jax.Array:
  """Mean over examples of ||logits − onehot(label)||²  (the reference's "mean squared error")."""
  onehot = jax.nn.one_hot(labels, logits.shape[-1], dtype=logits.dtype)
  return jnp.mean(jnp.sum((logits - onehot) ** 2, axis=-1))


def cross_entropy(logits: jax.Array, labels: jax.Array) -> jax.Array:
  """Mean over examples of −log softmax(logits)[label]."""
  return jnp.mean(optax.softmax_cross_entropy_with_integer_labels(logits, labels))


def error_rate(logits: jax.Array, labels: jax.Array) -> jax.Array:
  """Fraction of examples whose arg-max logit is not the label."""
  return jnp.mean(jnp.argmax(logits, axis=-1) != labels)


LOSSES: dict[str, Callable[[jax.Array, jax.Array], jax.Array]] = {
    "squared_error": squared_error, "cross_entropy": cross_entropy}
