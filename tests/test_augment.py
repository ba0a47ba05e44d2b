"""Tests for sam_edge.data.augment: flip_crop against a numpy reference."""

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from sam_edge.data import augment

flip_crop = jax.jit(augment.flip_crop)      # Compiled once per shape, shared by the tests.


def random_images(shape, dtype, seed=0) -> np.ndarray:
  """Random images; uint8 over 0..255 or float32 uniform (ties between crops are unlikely)."""
  rng = np.random.default_rng(seed)
  if dtype == np.uint8:
    return rng.integers(1, 256, size=shape, dtype=np.uint8)   # 1..255: never the pad value 0
  return rng.random(shape).astype(dtype) + 1


def reference(images: np.ndarray, offsets: np.ndarray, flips: np.ndarray, pad: int
              ) -> np.ndarray:
  """numpy: zero-pad H and W by `pad`, crop at (dy, dx), flip the W axis where asked."""
  _, h, w, _ = images.shape
  padded = np.pad(images, ((0, 0), (pad, pad), (pad, pad), (0, 0)))
  out = []
  for x, (dy, dx), flip in zip(padded, offsets, flips):
    crop = x[dy:dy + h, dx:dx + w]
    out.append(crop[:, ::-1] if flip else crop)
  return np.stack(out)


def crops_of(x: np.ndarray, pad: int) -> list[tuple[int, int, bool, np.ndarray]]:
  """Every (dy, dx, flip, crop): the crops of the zero-padded example x, flipped or not."""
  h, w, _ = x.shape
  padded = np.pad(x, ((pad, pad), (pad, pad), (0, 0)))
  return [(dy, dx, flip, padded[dy:dy + h, dx:dx + w][:, ::-1] if flip
           else padded[dy:dy + h, dx:dx + w])
          for dy, dx, flip in itertools.product(range(2 * pad + 1), range(2 * pad + 1),
                                                (False, True))]


@pytest.mark.parametrize("shape, dtype", [
    ((6, 28, 28, 1), np.uint8), ((5, 32, 32, 3), np.uint8),
    ((4, 32, 32, 3), np.float32), ((3, 7, 5, 2), np.uint8)])
def test_keeps_shape_and_dtype_and_every_output_is_a_crop_of_the_padded_input(shape, dtype):
  images = random_images(shape, dtype)
  out = np.asarray(flip_crop(images, jax.random.key(3)))
  assert out.shape == images.shape and out.dtype == images.dtype
  for x, y in zip(images, out):
    # The output equals exactly one of the (2P+1)^2 * 2 candidate crops of its own input.
    matches = [(dy, dx, f) for dy, dx, f, crop in crops_of(x, augment.PAD)
               if np.array_equal(crop, y)]
    assert len(matches) == 1, matches


def test_matches_the_numpy_reference_for_the_drawn_choices():
  images = random_images((16, 9, 11, 3), np.uint8)
  key = jax.random.key(7)
  offsets, flips = augment.draw(key, len(images))
  assert offsets.shape == (16, 2) and flips.shape == (16,)
  expected = reference(images, np.asarray(offsets), np.asarray(flips), augment.PAD)
  np.testing.assert_array_equal(flip_crop(images, key), expected)
  np.testing.assert_array_equal(augment.crop_flip(images, offsets, flips), expected)


def test_padding_is_zero_and_flip_reverses_width():
  images = random_images((2, 6, 5, 1), np.uint8)
  # Offset (0, 0): the first P rows and columns of the crop are padding, the rest is the
  # input's top-left corner.
  out = np.asarray(augment.crop_flip(images, jnp.zeros((2, 2), jnp.int32),
                                     jnp.array([False, True])))
  assert (out[0, :4, :] == 0).all() and (out[0, :, :4] == 0).all()
  np.testing.assert_array_equal(out[0, 4:, 4:], images[0, :2, :1])
  # Flipped: the same crop mirrored, so the input's corner lands in column 0.
  assert (out[1, :4, :] == 0).all() and (out[1, :, 1:] == 0).all()
  np.testing.assert_array_equal(out[1, 4:, :1], images[1, :2, :1])
  # Centred offset (P, P) with a flip is the mirror image.
  centred = np.asarray(augment.crop_flip(images, jnp.full((2, 2), augment.PAD, jnp.int32),
                                         jnp.array([True, False])))
  np.testing.assert_array_equal(centred[0], images[0, :, ::-1])
  np.testing.assert_array_equal(centred[1], images[1])


def test_deterministic_in_seed_and_step():
  images = random_images((32, 8, 8, 3), np.uint8)
  step_fn = jax.jit(lambda x, seed, step: augment.flip_crop(
      x, augment.augment_key(jax.random.key(seed), step)))
  a = np.asarray(step_fn(images, 0, 5))
  np.testing.assert_array_equal(a, step_fn(images, 0, 5))
  np.testing.assert_array_equal(   # The same key built outside jit gives the same batch.
      a, flip_crop(images, augment.augment_key(jax.random.key(0), 5)))
  assert not np.array_equal(a, step_fn(images, 0, 6))
  assert not np.array_equal(a, step_fn(images, 1, 5))


def test_augment_key_is_the_documented_fold_in():
  data_key = jax.random.key(11)
  expected = jax.random.fold_in(jax.random.fold_in(data_key, augment.AUGMENT_TAG), 42)
  np.testing.assert_array_equal(jax.random.key_data(augment.augment_key(data_key, 42)),
                                jax.random.key_data(expected))


def test_flips_about_half_and_offsets_cover_the_range():
  n = 20_000
  offsets, flips = jax.jit(augment.draw, static_argnums=1)(jax.random.key(5), n)
  rate = float(np.mean(np.asarray(flips)))
  assert abs(rate - 0.5) < 4 * np.sqrt(0.25 / n)           # 4 standard deviations
  for axis in range(2):
    counts = np.bincount(np.asarray(offsets[:, axis]), minlength=2 * augment.PAD + 1)
    assert len(counts) == 2 * augment.PAD + 1                # Never outside 0..2P.
    expected = n / (2 * augment.PAD + 1)
    assert np.all(np.abs(counts - expected) < 5 * np.sqrt(expected))


def test_flips_happen_in_outputs():
  # Identify each output's (dy, dx, flip) by search, independently of `draw`.
  images = random_images((200, 6, 6, 1), np.uint8, seed=2)
  out = np.asarray(flip_crop(images, jax.random.key(9)))
  flipped = []
  for x, y in zip(images, out):
    (flip,) = {f for _, _, f, crop in crops_of(x, augment.PAD) if np.array_equal(crop, y)}
    flipped.append(flip)
  assert abs(np.mean(flipped) - 0.5) < 4 * np.sqrt(0.25 / len(flipped))


def test_rejects_unbatched_images():
  with pytest.raises(ValueError, match=r"\[B, H, W, C\]"):
    augment.flip_crop(np.zeros((28, 28, 1), np.uint8), jax.random.key(0))
