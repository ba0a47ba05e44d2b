"""Tests for sam_edge.data.label_noise: exact rate, other classes only, uniform, reproducible."""

import jax
import numpy as np
import pytest
from scipy import stats

from sam_edge.data import label_noise

noisy = jax.jit(label_noise.noisy_labels, static_argnums=(1, 2))


def labels_of(n: int, k: int, seed: int = 0) -> np.ndarray:
  return np.random.default_rng(seed).integers(0, k, size=n).astype(np.int32)


@pytest.mark.parametrize("n, k, fraction, expected", [
    (1000, 10, 0.4, 400), (1000, 100, 0.123, 123), (10, 10, 0.25, 3),   # 2.5 rounds up
    (7, 3, 1.0, 7), (50_000, 10, 0.2, 10_000), (9, 2, 0.5, 5)])
def test_rate_is_exact_and_replaced_labels_differ(n, k, fraction, expected):
  assert label_noise.num_flipped(n, fraction) == expected
  labels = labels_of(n, k)
  new, flipped = noisy(labels, k, fraction, jax.random.key(1))
  new, flipped = np.asarray(new), np.asarray(flipped)
  assert new.dtype == np.int32 and flipped.dtype == bool and new.shape == flipped.shape == (n,)
  assert flipped.sum() == expected
  assert (new != labels).sum() == expected             # Every replaced label changed ...
  np.testing.assert_array_equal(new != labels, flipped)
  np.testing.assert_array_equal(new[~flipped], labels[~flipped])   # ... and only those.
  assert ((new >= 0) & (new < k)).all()


def test_fraction_zero_is_the_identity():
  labels = labels_of(500, 10)
  new, flipped = noisy(labels, 10, 0.0, jax.random.key(3))
  np.testing.assert_array_equal(new, labels)
  assert not np.asarray(flipped).any()


def test_replacements_are_uniform_over_the_other_classes():
  k = 5
  labels = labels_of(50_000, k, seed=4)
  new, _ = noisy(labels, k, 1.0, jax.random.key(2))
  new = np.asarray(new)
  for c in range(k):
    counts = np.bincount(new[labels == c], minlength=k)
    assert counts[c] == 0
    others = np.delete(counts, c)
    # Chi-square goodness of fit to uniform over the k - 1 other classes (fixed key: the
    # p-value is one number; 1e-4 would reject a biased draw of this size).
    assert stats.chisquare(others).pvalue > 1e-4, (c, others)


def test_chosen_examples_are_spread_uniformly():
  n = 20_000
  _, flipped = noisy(labels_of(n, 10), 10, 0.3, jax.random.key(8))
  per_block = np.asarray(flipped).reshape(20, -1).sum(axis=1)   # 20 blocks of 1000
  # Hypergeometric: mean 300, sd ~ sqrt(1000 * 0.3 * 0.7 * 0.95) ~ 14.1.
  assert np.all(np.abs(per_block - 300) < 5 * 14.2), per_block


def test_reproducible_from_the_key():
  labels = labels_of(1000, 10)
  a = noisy(labels, 10, 0.4, label_noise.noise_key(jax.random.key(0)))
  b = noisy(labels, 10, 0.4, label_noise.noise_key(jax.random.key(0)))
  c = noisy(labels, 10, 0.4, label_noise.noise_key(jax.random.key(1)))
  for x, y in zip(a, b):
    np.testing.assert_array_equal(x, y)
  assert not np.array_equal(a[1], c[1]) and not np.array_equal(a[0], c[0])
  eager = label_noise.noisy_labels(labels, 10, 0.4, label_noise.noise_key(jax.random.key(0)))
  np.testing.assert_array_equal(eager[0], a[0])


def test_noise_key_is_the_documented_fold_in():
  key = jax.random.key(6)
  np.testing.assert_array_equal(
      jax.random.key_data(label_noise.noise_key(key)),
      jax.random.key_data(jax.random.fold_in(key, label_noise.LABEL_NOISE_TAG)))


@pytest.mark.parametrize("fraction", [-0.1, 1.5, float("nan")])
def test_bad_fraction(fraction):
  with pytest.raises(ValueError, match="fraction"):
    label_noise.noisy_labels(labels_of(10, 10), 10, fraction, jax.random.key(0))


def test_needs_two_classes():
  with pytest.raises(ValueError, match="2 classes"):
    label_noise.noisy_labels(np.zeros(4, np.int32), 1, 0.5, jax.random.key(0))
