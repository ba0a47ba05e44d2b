"""`--augment` on a training batch: its ops (`input_spec.ORDER`) in turn, each drawing from its
own part of the step's key, on device, a pure function of (seed, step).

With k = `augment.augment_key(data_key, step)` and a uint8 batch x [B, H, W, C]:

  autoaugment  x = autoaugment.autoaugment(x, fold_in(k, AUTOAUGMENT_TAG))
  flip, crop   offsets, flips = augment.draw(k, B)      (today's flip_crop draws, from k itself)
               x = augment.crop_flip(x, offsets if crop else P, flips if flip else False)
  brightness   x = brightness.random_brightness(x, fold_in(k, BRIGHTNESS_TAG), d)
  cutout       x = cutout.cutout(x, fold_in(k, CUTOUT_TAG), S, fill)

Each op keeps its draws whatever else is asked: `flip,crop` (`flip_crop`) is exactly the old
`augment.flip_crop(x, k)`, draws and bytes, with or without the other ops around it.
"""

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp

from sam_edge.data import augment, autoaugment, brightness, cutout, input_spec

AUTOAUGMENT_TAG = 0x61613221      # b"aa2!"
BRIGHTNESS_TAG = 0x62726921       # b"bri!"
CUTOUT_TAG = 0x63757421           # b"cut!"


@dataclasses.dataclass(frozen=True)
class Augmentation:
  """The ops (a subset of `input_spec.ORDER`, in its order), cutout's side S and fill value
  (uint8, broadcast to one example: `normalize.Normalization.centre`), brightness's d."""
  ops: tuple[str, ...]
  cutout_size: int = input_spec.CUTOUT_SIZE
  cutout_fill: Any = 0
  brightness_delta: float = input_spec.BRIGHTNESS_DELTA


def _flip_crop(images: jax.Array, key: jax.Array, ops: tuple[str, ...]) -> jax.Array:
  """Today's flip_crop draws; the crop's offsets replaced by the centred P (no crop) without
  `crop`, the flips by False without `flip`."""
  offsets, flips = augment.draw(key, images.shape[0])
  if "crop" not in ops:
    offsets = jnp.full_like(offsets, augment.PAD)
  if "flip" not in ops:
    flips = jnp.zeros_like(flips)
  return augment.crop_flip(images, offsets, flips)


def apply(settings: Augmentation, images: jax.Array, key: jax.Array) -> jax.Array:
  """`settings.ops` on the uint8 batch [B, H, W, C] with the step's key `key` (module doc); the
  same shape and dtype back. Jittable."""
  if images.ndim != 4 or images.dtype != jnp.uint8:
    raise ValueError(f"augmentation expects uint8 [B, H, W, C] images, got {images.dtype} "
                     f"{images.shape}")
  ops = settings.ops
  if "autoaugment" in ops:
    images = autoaugment.autoaugment(images, jax.random.fold_in(key, AUTOAUGMENT_TAG))
  if "flip" in ops or "crop" in ops:
    images = _flip_crop(images, key, ops)
  if "brightness" in ops:
    images = brightness.random_brightness(images, jax.random.fold_in(key, BRIGHTNESS_TAG),
                                          settings.brightness_delta)
  if "cutout" in ops:
    images = cutout.cutout(images, jax.random.fold_in(key, CUTOUT_TAG), settings.cutout_size,
                           settings.cutout_fill)
  return images
