"""The classification losses, against hand computations: the reference's squared error is the
mean over all B×C entries (not the sum over classes)."""

import jax.numpy as jnp
import numpy as np
import pytest

from sam_edge.models import losses, registry

LOGITS = np.array([[0.5, -1.0, 2.0], [1.5, 0.0, -0.5]], np.float32)   # B = 2, C = 3
LABELS = np.array([2, 0], np.int32)


def onehot(labels, c=3):
  return np.eye(c, dtype=np.float32)[labels]


def test_squared_error_is_the_mean_over_all_entries():
  expected = ((LOGITS - onehot(LABELS)) ** 2).sum() / (2 * 3)
  assert float(losses.squared_error(jnp.asarray(LOGITS), LABELS)) == pytest.approx(expected)


def test_the_other_squared_errors_are_named_multiples():
  base = float(losses.squared_error(jnp.asarray(LOGITS), LABELS))
  assert float(losses.sum_squared_error(jnp.asarray(LOGITS), LABELS)) == pytest.approx(3 * base)
  assert float(losses.half_sum_squared_error(jnp.asarray(LOGITS), LABELS)) == pytest.approx(
      1.5 * base)


def test_cross_entropy_and_label_smoothing():
  log_softmax = LOGITS - np.log(np.exp(LOGITS).sum(-1, keepdims=True))
  expected = -log_softmax[np.arange(2), LABELS].mean()
  assert float(losses.cross_entropy(jnp.asarray(LOGITS), LABELS)) == pytest.approx(expected,
                                                                                 rel=1e-6)
  s = 0.2
  y = (1 - s) * onehot(LABELS) + s / 3
  smoothed = -(y * log_softmax).sum(-1).mean()
  assert float(losses.cross_entropy(jnp.asarray(LOGITS), LABELS, s)) == pytest.approx(smoothed,
                                                                                    rel=1e-6)
  sq = ((LOGITS - y) ** 2).mean()
  assert float(losses.squared_error(jnp.asarray(LOGITS), LABELS, s)) == pytest.approx(sq)


def test_every_loss_has_a_formula():
  assert list(registry.LOSS_FORMULAS) == list(losses.LOSSES)
