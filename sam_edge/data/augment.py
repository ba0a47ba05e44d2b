"""On-device "flip_crop" augmentation: a random crop after padding, and a random horizontal flip.

For each example x of a batch [B, H, W, C] independently (P = PAD = 4):

  padded = zero-pad x by P pixels on each side of H and W          # [H + 2P, W + 2P, C]
  (dy, dx) ~ uniform on {0, ..., 2P}^2
  crop = padded[dy : dy + H, dx : dx + W, :]
  out = crop[:, ::-1, :] with probability 1/2, else crop

Padding value: zero, applied to the image as stored. Pass the raw uint8 images (before
`images.preprocess`), so the border is black, as torchvision's `RandomCrop(32, padding=4)`
followed by `RandomHorizontalFlip()` on PIL images does in davda54/sam (normalisation comes after
the crop there too). On float inputs the border is 0.0 in whatever space they are in (on centred
inputs that is the mean pixel, not black).

The key is a pure function of (seed, step), `augment_key(data_key, step) = fold_in(fold_in(data_key,
AUGMENT_TAG), step)`, so a resumed run augments exactly as an uninterrupted one. AUGMENT_TAG is far
above any epoch number that `batching` folds into the same data key.
"""

import jax
import jax.numpy as jnp

PAD = 4
AUGMENT_TAG = 0x61756721  # b"aug!" as an integer.


def augment_key(data_key: jax.Array, step: jax.Array | int) -> jax.Array:
  """fold_in(fold_in(data_key, AUGMENT_TAG), step): the augmentation key of `step`."""
  return jax.random.fold_in(jax.random.fold_in(data_key, AUGMENT_TAG), step)


def draw(key: jax.Array, batch_size: int, pad: int = PAD) -> tuple[jax.Array, jax.Array]:
  """The random choices of `flip_crop`: offsets int32 [B, 2] in {0..2·pad}, flips bool [B]."""
  offset_key, flip_key = jax.random.split(key)
  offsets = jax.random.randint(offset_key, (batch_size, 2), 0, 2 * pad + 1, jnp.int32)
  flips = jax.random.bernoulli(flip_key, 0.5, (batch_size,))
  return offsets, flips


def crop_flip(images: jax.Array, offsets: jax.Array, flips: jax.Array, pad: int = PAD
              ) -> jax.Array:
  """Deterministic part of `flip_crop`: out[b] = flip_b(zero_pad(images[b])[dy_b : dy_b + H,
  dx_b : dx_b + W]) for images [B, H, W, C], offsets [B, 2] = (dy, dx) and flips [B]."""
  _, h, w, c = images.shape
  padded = jnp.pad(images, ((0, 0), (pad, pad), (pad, pad), (0, 0)))   # [B, H+2P, W+2P, C]

  def one(x, offset, flip):
    crop = jax.lax.dynamic_slice(x, (offset[0], offset[1], 0), (h, w, c))   # [H, W, C]
    return jnp.where(flip, crop[:, ::-1, :], crop)
  return jax.vmap(one)(padded, offsets, flips)


def flip_crop(images: jax.Array, key: jax.Array, pad: int = PAD) -> jax.Array:
  """A random crop after `pad`-pixel zero padding and a random horizontal flip, per example.

  `images` is [B, H, W, C], uint8 (raw, preferred) or float; `key` a PRNG key, e.g.
  `augment_key(data_key, step)`; `pad` the padding on each side of H and W (4, as the SAM papers'
  CIFAR recipe). Returns the augmented batch, of the shape and dtype of `images`. Jittable.
  """
  if images.ndim != 4:
    raise ValueError(f"flip_crop expects [B, H, W, C] images, got shape {images.shape}")
  offsets, flips = draw(key, images.shape[0], pad)
  return crop_flip(images, offsets, flips, pad)
