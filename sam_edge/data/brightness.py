"""Random brightness as SAM-TF applies it (`tf.image.random_brightness(image, max_delta=0.5)` on
inputs in [0, 1], then `tf.clip_by_value(image, 0., 1.)`), on raw uint8 images; SAM-TF's
max_delta 0.5 is `--brightness_delta`'s default.

For each example b of a batch [B, H, W, C] independently, with d = `max_delta`:

  δ_b ~ uniform on [−d, d)                       (on the [0, 1] pixel scale)
  out[b] = clip(round(images[b] + 255·δ_b), 0, 255)     (uint8; round: to nearest, ties to even)

that is x/255 + δ clipped to [0, 1], in units of 1/255; the rounding to an integer, ≤ 0.5/255,
is the only difference from SAM-TF, which keeps float images. Every channel and pixel of an
example shifts by the same δ_b (`dm_pix.adjust_brightness` adds it).
"""

import dm_pix
import jax
import jax.numpy as jnp


def draw(key: jax.Array, batch_size: int, max_delta: float) -> jax.Array:
  """The shifts δ: float32 [B], uniform on [−max_delta, max_delta) ([0, 1] pixel scale)."""
  return jax.random.uniform(key, (batch_size,), jnp.float32, -max_delta, max_delta)


def shift(images: jax.Array, deltas: jax.Array) -> jax.Array:
  """Deterministic part of `random_brightness`: clip(round(x + 255·δ_b), 0, 255) per example of
  the uint8 batch [B, H, W, C], δ [B]."""
  x = dm_pix.adjust_brightness(images.astype(jnp.float32), 255 * deltas[:, None, None, None])
  return jnp.clip(jnp.round(x), 0, 255).astype(jnp.uint8)


def random_brightness(images: jax.Array, key: jax.Array, max_delta: float) -> jax.Array:
  """Random brightness (module doc) of a uint8 batch [B, H, W, C]; the same shape and dtype back.
  Jittable."""
  if images.ndim != 4 or images.dtype != jnp.uint8:
    raise ValueError("random_brightness expects uint8 [B, H, W, C] images, got "
                     f"{images.dtype} {images.shape}")
  return shift(images, draw(key, images.shape[0], max_delta))
