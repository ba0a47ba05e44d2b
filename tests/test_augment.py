"""Tests for the training-batch augmentations: flip_crop against a numpy reference
(sam_edge.data.augment), cutout, brightness, AutoAugment and the --augment pipeline."""

import itertools
import types

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from sam_edge.data import (
  augment,
  augment_pipeline,
  autoaugment,
  autoaugment_ops,
  brightness,
  cutout,
  input_spec,
  normalize,
)
from sam_edge.tasks import image_problem

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


# --------------------------------------------------------------------------------------------
# Cutout, brightness and the --augment pipeline (sam_edge.data.{cutout, brightness,
# augment_pipeline}); AutoAugment below.


@pytest.mark.parametrize("centre, size, rows, cols", [
    ((3, 5), 4, (1, 5), (3, 7)),        # inside: rows cy − 2 .. cy + 1, columns cx − 2 .. cx + 1
    ((0, 7), 4, (0, 2), (5, 8)),        # clipped at the top and right borders
    ((4, 4), 3, (3, 6), (3, 6)),        # odd side: cy − 1 .. cy + 1
    ((7, 0), 1, (7, 8), (0, 1)),        # one pixel
])
def test_cutout_sets_exactly_the_square_around_the_centre(centre, size, rows, cols):
  images = random_images((2, 8, 8, 3), np.uint8)        # values 1..255: never the fill 0
  fill = np.array([0, 7, 9], np.uint8)                     # per channel (a mean colour)
  out = np.asarray(cutout.cut(images, jnp.array([centre, (7, 7)]), size, fill))
  expected = images[0].copy()
  expected[rows[0]:rows[1], cols[0]:cols[1]] = fill
  np.testing.assert_array_equal(out[0], expected)
  assert out.dtype == np.uint8
  # The second example's square, around (7, 7), is its own.
  above = 7 - size // 2
  assert (out[1, 7, 7] == fill).all() and (out[1, :above] == images[1, :above]).all()


def test_cutout_draws_one_square_per_example_from_the_key():
  images = random_images((64, 8, 8, 1), np.uint8)
  out = np.asarray(jax.jit(cutout.cutout, static_argnums=2)(images, jax.random.key(4), 4))
  centres = np.asarray(cutout.draw(jax.random.key(4), 64, 8, 8))
  assert centres.min() == 0 and centres.max() == 7 and len(np.unique(centres, axis=0)) > 30
  np.testing.assert_array_equal(out, cutout.cut(images, centres, 4))
  for x, y, (cy, cx) in zip(images, out, centres):
    zeroed = y[..., 0] == 0
    assert zeroed.sum() == (min(cy + 2, 8) - max(cy - 2, 0)) * (min(cx + 2, 8) - max(cx - 2, 0))
    np.testing.assert_array_equal(y[~zeroed], x[~zeroed])


def test_brightness_shifts_by_255_delta_rounds_and_clips():
  images = np.array([0, 100, 250], np.uint8).reshape(1, 1, 3, 1).repeat(2, axis=0)
  out = np.asarray(brightness.shift(images, jnp.array([0.2, -0.4])))
  np.testing.assert_array_equal(out[0, 0, :, 0], [51, 151, 255])       # + 51, 301 clipped
  np.testing.assert_array_equal(out[1, 0, :, 0], [0, 0, 148])          # − 102, clipped at 0
  assert out.dtype == np.uint8


def test_brightness_draws_one_shift_per_example_within_the_delta():
  images = np.full((500, 2, 2, 3), 128, np.uint8)
  deltas = np.asarray(brightness.draw(jax.random.key(2), 500, 0.3))
  assert -0.3 <= deltas.min() < -0.25 and 0.25 < deltas.max() < 0.3
  out = np.asarray(brightness.random_brightness(images, jax.random.key(2), 0.3)).astype(int)
  assert (out == out[:, :1, :1, :1]).all()                        # one shift per example
  shifted = np.float32(128) + np.float32(255) * deltas              # float32, as on device
  np.testing.assert_array_equal(out[:, 0, 0, 0], np.round(shifted))


def test_flip_crop_is_flip_comma_crop_bitwise_and_other_ops_keep_its_draws():
  images = random_images((16, 9, 11, 3), np.uint8)
  key = augment.augment_key(jax.random.key(7), 3)
  old = np.asarray(augment.flip_crop(images, key))
  for text in ("flip_crop", "flip,crop", "crop,flip", " crop , flip "):
    settings = augment_pipeline.Augmentation(input_spec.parse(text))
    np.testing.assert_array_equal(augment_pipeline.apply(settings, images, key), old)
  # brightness with d = 0 changes nothing, and the crops and flips stay today's.
  still = augment_pipeline.Augmentation(input_spec.parse("flip_crop,brightness"),
                                        brightness_delta=0.0)
  np.testing.assert_array_equal(augment_pipeline.apply(still, images, key), old)
  offsets, flips = augment.draw(key, 16)
  only_flip = augment_pipeline.apply(augment_pipeline.Augmentation(("flip",)), images, key)
  np.testing.assert_array_equal(only_flip, np.where(np.asarray(flips)[:, None, None, None],
                                                    images[:, :, ::-1], images))
  only_crop = augment_pipeline.apply(augment_pipeline.Augmentation(("crop",)), images, key)
  np.testing.assert_array_equal(only_crop, augment.crop_flip(images, offsets, jnp.zeros(16, bool)))


def test_every_augmentation_is_a_pure_function_of_seed_and_step():
  images = random_images((6, 32, 32, 3), np.uint8)
  settings = augment_pipeline.Augmentation(
      input_spec.parse("flip,crop,cutout,brightness,autoaugment"), 8, np.uint8(120), 0.5)
  once = jax.jit(lambda x, seed, step: augment_pipeline.apply(
      settings, x, augment.augment_key(jax.random.key(seed), step)))
  a = np.asarray(once(images, 0, 5))
  assert a.shape == images.shape and a.dtype == np.uint8 and not np.array_equal(a, images)
  np.testing.assert_array_equal(a, once(images, 0, 5))
  assert not np.array_equal(a, once(images, 0, 6)) and not np.array_equal(a, once(images, 1, 5))


def test_the_ops_work_per_example_inside_vmap():
  """vmap over batches of one example each gives the batch's own result (AutoAugment maps its
  ops over the examples with vmap itself)."""
  images = random_images((5, 8, 8, 3), np.uint8)
  settings = augment_pipeline.Augmentation(input_spec.parse("flip,crop,brightness,cutout"), 3)
  keys = jax.random.split(jax.random.key(3), 5)
  per_example = jax.jit(jax.vmap(lambda x, k: augment_pipeline.apply(settings, x[None], k)[0]))
  out = per_example(images, keys)
  for i in range(5):
    np.testing.assert_array_equal(out[i], augment_pipeline.apply(settings, images[i:i + 1],
                                                                 keys[i])[0])


def test_the_problem_augments_the_steps_batch_with_the_steps_key():
  settings = types.SimpleNamespace(augment="none", cutout_size=4, brightness_delta=0.0)
  norm = normalize.Normalization(255.0, np.array([0.2, 0.4, 0.6], np.float32))
  assert image_problem.augment_fn(settings, norm) is None
  settings.augment = "cutout,flip_crop"
  fn = image_problem.augment_fn(settings, norm)
  batch = {"image": random_images((4, 8, 8, 3), np.uint8), "label": np.arange(4)}
  data_key = jax.random.key(1)
  out = fn(batch, data_key, 9)
  np.testing.assert_array_equal(out["label"], batch["label"])
  settings = augment_pipeline.Augmentation(("flip", "crop", "cutout"), 4, norm.centre())
  expected = augment_pipeline.apply(settings, batch["image"], augment.augment_key(data_key, 9))
  np.testing.assert_array_equal(out["image"], expected)
  assert (np.asarray(out["image"]) == [51, 102, 153]).all(axis=-1).any()   # the fill: 255·shift


# --------------------------------------------------------------------------------------------
# AutoAugment (sam_edge.data.autoaugment, autoaugment_ops): the policy table, each op at a
# magnitude of the table by hand, the colour ops against PIL, and the policy's application.


def test_the_cifar10_policy_has_25_sub_policies_of_two_known_ops():
  policy = autoaugment.CIFAR10_POLICY
  assert len(policy) == 25 and all(len(sub) == 2 for sub in policy)
  for name, p, level in (step for sub in policy for step in sub):
    assert name in autoaugment.OPS and 0 <= p <= 1
    assert (level is None) == (autoaugment.OPS[name][1] is None), name
    assert level is None or level in range(10)
  assert policy[0] == (("Invert", 0.1, None), ("Contrast", 0.2, 6))        # the paper's first
  assert policy[-1] == (("TranslateY", 0.7, 9), ("AutoContrast", 0.9, None))   # and last rows
  arrays = autoaugment.policy_arrays()
  assert all(a.shape == (25, 2) for a in arrays.values())
  argument = {(policy[i][j][0], policy[i][j][2]): arrays["argument"][i, j]
              for i in range(25) for j in range(2)}
  assert argument["Posterize", 7] == 2 and argument["Solarize", 2] == 205
  assert argument["Rotate", 2] == 6 and argument["TranslateY", 9] == 9
  assert argument["ShearY", 8] == np.float32(0.24)
  assert argument["Sharpness", 5] == 100 and argument["Color", 0] == 10    # factors in percent
  assert argument["Brightness", 9] == 172 and argument["Contrast", 6] == 118
  signed = {policy[i][j][0] for i in range(25) for j in range(2) if arrays["signed"][i, j]}
  assert signed == {"Rotate", "ShearY", "TranslateX", "TranslateY"}


JITTED_OPS = {name: jax.jit(op) for name, (op, _, _) in autoaugment.OPS.items()}


def _op(name: str, x, v=0.0) -> np.ndarray:
  return np.asarray(JITTED_OPS[name](jnp.asarray(x, jnp.uint8), jnp.float32(v)))


def test_each_colour_op_at_a_magnitude_of_the_table_by_hand():
  line = np.array([[[0], [63], [64], [200], [205], [255]]], np.uint8)        # [1, 6, 1]
  np.testing.assert_array_equal(_op("Invert", line)[0, :, 0], [255, 192, 191, 55, 50, 0])
  np.testing.assert_array_equal(_op("Posterize", line, 2)[0, :, 0], [0, 0, 64, 192, 192, 192])
  np.testing.assert_array_equal(_op("Solarize", line, 205)[0, :, 0], [0, 63, 64, 200, 50, 0])
  np.testing.assert_array_equal(_op("Brightness", line, 172)[0, :, 0],
                                [0, 108, 110, 255, 255, 255])       # ⌊1.72 x⌋, clipped
  # Color 0.1: grey(200, 100, 0) = 7798768 >> 16 = 118; 118 + 0.1·(x − 118) = 126.2, 116.2, 106.2.
  np.testing.assert_array_equal(_op("Color", [[[200, 100, 0]]], 10), [[[126, 116, 106]]])
  np.testing.assert_array_equal(_op("Color", line, 10), line)       # one channel: the identity
  # Contrast 1.18 around m = ⌊mean(0, 100, 200, 255) + ½⌋ = 139.
  square = np.array([[0, 100], [200, 255]], np.uint8)[..., None]
  np.testing.assert_array_equal(_op("Contrast", square, 118)[..., 0], [[0, 92], [210, 255]])
  # Sharpness 1.72: the centre's smooth is round(5·130/13) = 50, 50 + 1.72·80 = 187.6.
  dot = np.zeros((3, 3, 1), np.uint8)
  dot[1, 1] = 130
  np.testing.assert_array_equal(_op("Sharpness", dot, 172)[..., 0],
                                [[0, 0, 0], [0, 187, 0], [0, 0, 0]])
  np.testing.assert_array_equal(_op("Sharpness", dot, 100), dot)    # level 5: the identity
  # AutoContrast: per channel (x − lo)·255 // (hi − lo); a constant channel stays.
  two = np.stack([square[..., 0] // 5 + 10, np.full((2, 2), 7)], axis=-1).astype(np.uint8)
  np.testing.assert_array_equal(_op("AutoContrast", two)[..., 0], [[0, 100], [200, 255]])
  np.testing.assert_array_equal(_op("AutoContrast", two)[..., 1], two[..., 1])
  # Equalize: half the pixels 50, half 100: s = (512 − 256) // 255 = 1, lut[50] = 0,
  # lut[100] = min(255, 256); fewer than 256 other pixels: the identity.
  halves = np.repeat(np.array([50, 100], np.uint8), 256).reshape(16, 32, 1)
  np.testing.assert_array_equal(_op("Equalize", halves), np.where(halves == 50, 0, 255))
  np.testing.assert_array_equal(_op("Equalize", square), square)


def test_each_geometric_op_at_a_magnitude_of_the_table_by_hand():
  x = (np.arange(20).reshape(4, 5, 1) + 1).astype(np.uint8)
  fill = autoaugment_ops.FILL
  np.testing.assert_array_equal(_op("TranslateX", x, 3)[..., 0],
                                np.c_[x[:, 3:, 0], np.full((4, 3), fill)])
  np.testing.assert_array_equal(_op("TranslateX", x, -3)[..., 0],
                                np.c_[np.full((4, 3), fill), x[:, :2, 0]])
  np.testing.assert_array_equal(_op("TranslateY", x, 3)[..., 0],
                                np.r_[x[3:, :, 0], np.full((3, 5), fill)])
  # ShearY 0.24: out[y, x] = in[round(y + 0.24 x), x]: columns 0..2 stay, 3 and 4 move up a row.
  sheared = _op("ShearY", x, 0.24)[..., 0]
  np.testing.assert_array_equal(sheared[:, :3], x[:, :3, 0])
  np.testing.assert_array_equal(sheared[:, 3:], np.r_[x[1:, 3:, 0], np.full((1, 2), fill)])
  square = (np.arange(16).reshape(4, 4, 1) + 1).astype(np.uint8)
  np.testing.assert_array_equal(_op("Rotate", square, 90), np.rot90(square))   # about the centre
  np.testing.assert_array_equal(_op("Rotate", square, 0), square)


def test_the_colour_ops_at_the_tables_magnitudes_give_pils_bytes():
  """Exactly PIL's, but for the float rounding PIL's own formulas suffer: AutoContrast's
  (float64) and the blends' (float32 factors: 1.18 is 1.1799999, so PIL gives ⌊1.18·50⌋ = 58): one
  off where the exact value is whole."""
  Image = pytest.importorskip("PIL.Image")
  from PIL import ImageEnhance, ImageOps
  x = np.random.default_rng(3).integers(40, 220, (16, 32, 3), dtype=np.uint8)
  im = Image.fromarray(x)
  enhance = lambda kind: lambda v: kind(im).enhance(np.float32(v / 100))
  pil = {"Invert": lambda v: ImageOps.invert(im),
         "Posterize": lambda v: ImageOps.posterize(im, int(v)),
         "Solarize": lambda v: ImageOps.solarize(im, v),
         "Equalize": lambda v: ImageOps.equalize(im),
         "AutoContrast": lambda v: ImageOps.autocontrast(im),
         "Brightness": enhance(ImageEnhance.Brightness),
         "Color": enhance(ImageEnhance.Color),
         "Contrast": enhance(ImageEnhance.Contrast),
         "Sharpness": enhance(ImageEnhance.Sharpness)}
  exact = ("Invert", "Posterize", "Solarize", "Equalize")
  arrays = autoaugment.policy_arrays()
  for name, make in pil.items():
    index = autoaugment.NAMES.index(name)
    arguments = np.unique(arrays["argument"][arrays["op"] == index])       # the table's
    got = jax.jit(jax.vmap(autoaugment.OPS[name][0], in_axes=(None, 0)))(x, arguments)
    for v, out in zip(arguments, np.asarray(got).astype(int)):
      want = np.asarray(make(v)).astype(int)
      assert np.abs(out - want).max() <= (0 if name in exact else 1), (name, v)
      assert np.mean(out == want) > 0.95, (name, v)           # where the product is whole
      assert not np.array_equal(out, x) or v == 100, (name, v)      # each op does something


def test_the_policy_applies_the_drawn_sub_policy_with_its_probabilities_and_signs():
  x = random_images((3, 6, 6, 3), np.uint8)
  choices = {"subpolicy": jnp.array([0, 14, 12]),
             "uniform": jnp.array([[0.05, 0.2], [0.45, 0.0], [0.39, 0.2]]),
             "negate": jnp.array([[False, False], [True, True], [True, True]])}
  out = np.asarray(jax.jit(autoaugment.apply)(x, choices))
  # 0: Invert (0.05 < 0.1), not Contrast (0.2 < 0.2 fails).  14: Solarize 205 (0.45 < 0.5; not
  # signed), never Invert (p = 0).  12: TranslateY by −3 (0.39 < 0.4, signed and negated), not
  # Sharpness (0.2 < 0.2 fails).
  np.testing.assert_array_equal(out[0], 255 - x[0])
  np.testing.assert_array_equal(out[1], np.where(x[1] < 205, x[1], 255 - x[1]))
  np.testing.assert_array_equal(out[2, :3], np.full_like(x[2, :3], autoaugment_ops.FILL))
  np.testing.assert_array_equal(out[2, 3:], x[2, :3])
  drawn = autoaugment.draw(jax.random.key(0), 4000)
  counts = np.bincount(np.asarray(drawn["subpolicy"]), minlength=25)
  assert len(counts) == 25 and counts.min() > 100               # uniform over the 25
  assert abs(float(np.mean(drawn["negate"])) - 0.5) < 0.02


def test_autoaugment_rejects_float_or_unbatched_images():
  with pytest.raises(ValueError, match="uint8"):
    autoaugment.autoaugment(np.zeros((2, 4, 4, 3), np.float32), jax.random.key(0))
  with pytest.raises(ValueError, match=r"\[B, H, W, C\]"):
    augment_pipeline.apply(augment_pipeline.Augmentation(("cutout",)),
                           np.zeros((4, 4, 3), np.uint8), jax.random.key(0))
