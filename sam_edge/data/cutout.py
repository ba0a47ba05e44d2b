"""Cutout (DeVries & Taylor 2017, as the SAM paper's code applies it): a square of side S, centred
at a uniformly random pixel, clipped at the border, set to a fill value.

For each example b of a batch [B, H, W, C] independently, with h = ⌊S/2⌋:

  (cy, cx) ~ uniform on {0, ..., H−1} × {0, ..., W−1}
  out[b, y, x, :] = fill[y, x, :]  if cy − h <= y < cy − h + S and cx − h <= x < cx − h + S
                    images[b, y, x, :]  otherwise

so the square is S×S when it lies inside the image and its clipped part otherwise; for even S
(the default 16) these are the rows max(0, cy − S/2) .. min(H, cy + S/2) − 1 of google-research/
sam's `augmentation.cutout` and of AutoAugment's `cutout_numpy`.

The fill value: SAM's code cuts out after normalising, so its square is 0 in the normalised
space, the colour of the training set's mean. Here cutout runs on the raw uint8 images, before
`normalize`, and the caller passes the raw value its normalisation maps to 0 (`normalize.
Normalization.centre`: the mean image or mean colour rounded to uint8, or 0 for x/255), so that the
square is 0, up to that rounding, after preprocessing, as in SAM's runs. One difference remains:
SAM's code draws one centre for the whole batch, here each example draws its own (as in the
Cutout paper).
"""

import jax
import jax.numpy as jnp


def draw(key: jax.Array, batch_size: int, height: int, width: int) -> jax.Array:
  """The centres (cy, cx): int32 [B, 2], uniform on {0..H−1} × {0..W−1}."""
  high = jnp.array([height, width], jnp.int32)
  return jax.random.randint(key, (batch_size, 2), 0, high, jnp.int32)


def cut(images: jax.Array, centres: jax.Array, size: int, fill: jax.Array | int = 0
        ) -> jax.Array:
  """Deterministic part of `cutout`: the S×S square around each centre (module doc) set to
  `fill`, which broadcasts to one example ([H, W, C], [C] or a scalar)."""
  _, h, w, _ = images.shape
  start = centres - size // 2                                   # [B, 2]

  def inside(n, start):                                       # [B, n]: start <= i < start + S
    i = jnp.arange(n)[None, :]
    return (i >= start[:, None]) & (i < start[:, None] + size)
  mask = inside(h, start[:, 0])[:, :, None] & inside(w, start[:, 1])[:, None, :]   # [B, H, W]
  return jnp.where(mask[..., None], jnp.asarray(fill, images.dtype), images)


def cutout(images: jax.Array, key: jax.Array, size: int, fill: jax.Array | int = 0
           ) -> jax.Array:
  """Cutout of side `size` on a batch [B, H, W, C] (any dtype), one random centre per example;
  `fill` as in `cut`. Returns an array of the shape and dtype of `images`. Jittable."""
  if images.ndim != 4:
    raise ValueError(f"cutout expects [B, H, W, C] images, got shape {images.shape}")
  b, h, w, _ = images.shape
  return cut(images, draw(key, b, h, w), size, fill)
