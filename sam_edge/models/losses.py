"""Classification losses on logits [B, C] and integer labels [B].

With targets y = onehot(label) (or, with label smoothing s, y = (1 − s)·onehot + s/C):

  squared_error            (1/(B·C)) Σ_b Σ_c (logit_bc − y_bc)²     the reference's
                           `jnp.mean(optax.squared_error(logits, onehot))`: the mean over all
                           B×C entries
  sum_squared_error        (1/B) Σ_b Σ_c (logit_bc − y_bc)²         C times squared_error (and so
                           are its Hessian eigenvalues and gradient norms)
  half_sum_squared_error   (1/B) Σ_b ½ Σ_c (logit_bc − y_bc)²       Cohen et al.'s edge-of-stability
                           code: C/2 times squared_error
  cross_entropy            (1/B) Σ_b −Σ_c y_bc log softmax(logits_b)_c
"""

from typing import Any, Callable

import jax
import jax.numpy as jnp
import optax

Loss = Callable[..., jax.Array]   # (logits [B, C], labels [B], label_smoothing=0.0) -> scalar


def targets(labels: jax.Array, num_classes: int, dtype, label_smoothing: float = 0.0) -> jax.Array:
  """(1 − s)·onehot(labels) + s/C, float [B, C]; exactly the one-hot vectors when s = 0."""
  onehot = jax.nn.one_hot(labels, num_classes, dtype=dtype)
  if label_smoothing == 0:
    return onehot
  return optax.smooth_labels(onehot, label_smoothing)


def squared_error(logits: jax.Array, labels: jax.Array, label_smoothing: float = 0.0) -> jax.Array:
  """(1/(B·C)) Σ_b Σ_c (logit_bc − y_bc)²: the mean over all entries (the reference's loss)."""
  y = targets(labels, logits.shape[-1], logits.dtype, label_smoothing)
  return jnp.mean(optax.squared_error(logits, y))


def sum_squared_error(logits: jax.Array, labels: jax.Array,
                      label_smoothing: float = 0.0) -> jax.Array:
  """(1/B) Σ_b Σ_c (logit_bc − y_bc)²: the mean over examples of the sum over classes."""
  y = targets(labels, logits.shape[-1], logits.dtype, label_smoothing)
  return jnp.mean(jnp.sum(optax.squared_error(logits, y), axis=-1))


def half_sum_squared_error(logits: jax.Array, labels: jax.Array,
                           label_smoothing: float = 0.0) -> jax.Array:
  """(1/B) Σ_b ½ Σ_c (logit_bc − y_bc)² (Cohen et al.'s convention)."""
  return 0.5 * sum_squared_error(logits, labels, label_smoothing)


def cross_entropy(logits: jax.Array, labels: jax.Array, label_smoothing: float = 0.0) -> jax.Array:
  """(1/B) Σ_b −Σ_c y_bc log softmax(logits_b)_c; −log softmax(logits_b)[label_b] when s = 0."""
  if label_smoothing == 0:
    return jnp.mean(optax.softmax_cross_entropy_with_integer_labels(logits, labels))
  y = targets(labels, logits.shape[-1], logits.dtype, label_smoothing)
  return jnp.mean(optax.softmax_cross_entropy(logits, y))


def per_example(output_loss: Callable[[Any, Any], jax.Array], outputs: Any, batch: Any
                ) -> jax.Array:
  """[B]: the loss of each example taken alone, ℓ_b = output_loss(outputs[b:b+1], batch[b:b+1])
  (a mean over the example's own entries, e.g. a window's non-padding positions), from outputs
  computed on the whole batch (so BatchNorm's batch statistics are the batch's)."""
  one = lambda o, b: output_loss(*jax.tree.map(lambda x: x[None], (o, b)))
  return jax.vmap(one)(outputs, batch)


def misclassified(logits: jax.Array, labels: jax.Array) -> jax.Array:
  """1.0 where the arg-max logit is not the label, else 0.0 ([...] float32, one per example or
  position); its mean is the error rate."""
  return (jnp.argmax(logits, axis=-1) != labels).astype(jnp.float32)


def not_in_top_k(logits: jax.Array, labels: jax.Array, k: int) -> jax.Array:
  """1.0 where the label is not among the `k` largest logits, else 0.0 (one per example); its
  mean is the top-k error (k = 5: the top-5 error the SAM papers report for CIFAR-100 and
  ImageNet). The label's rank is the number of logits strictly above its own, so ties count in
  its favour; a NaN logit counts as above it (a diverged network is wrong)."""
  own = jnp.take_along_axis(logits, labels[..., None], axis=-1)          # [..., 1]
  return (jnp.sum(~(logits <= own), axis=-1) >= k).astype(jnp.float32)


LOSSES: dict[str, Loss] = {
    "squared_error": squared_error, "sum_squared_error": sum_squared_error,
    "half_sum_squared_error": half_sum_squared_error, "cross_entropy": cross_entropy}
