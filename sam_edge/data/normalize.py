"""`--normalize`: the map from raw uint8 images x to the network's float32 inputs, applied inside
the forward pass (on device), with statistics of the training images computed once on the host.

  mean_image   x/256 − m,          m = (1/N) Σ_i x_i/256, the mean training image [H, W, C]
               (the reference's preprocessing, unchanged bytes for bytes)
  per_channel  (x/255 − μ_c)/σ_c,  μ_c and σ_c the mean and standard deviation of channel c of
               the training pixels on the [0, 1] scale (over every image and position; σ_c = 0,
               a constant channel, is replaced by 1), as google-research/sam normalises
  none         x/255

Each is (x/D − shift)/scale; `centre` is the raw image it maps to 0 (rounded to uint8), the
fill value that makes a cut-out square 0 after preprocessing (`cutout`).
"""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np

from sam_edge.data import input_spec

METHODS = input_spec.NORMALIZE_METHODS
CHUNK = 4096                 # images per host pass of `channel_moments`


@dataclasses.dataclass(frozen=True, eq=False)          # hashed by identity: jit can take it
class Normalization:
  """(x/divisor − shift)/scale; `shift` broadcasts to [H, W, C], `scale` [C] or None (no
  division)."""
  divisor: float
  shift: np.ndarray
  scale: np.ndarray | None = None

  def __call__(self, images: jax.Array) -> jax.Array:
    """The float32 inputs of uint8 images [..., H, W, C] (jit-safe)."""
    x = images.astype(jnp.float32) / self.divisor - jnp.asarray(self.shift, jnp.float32)
    return x if self.scale is None else x / jnp.asarray(self.scale, jnp.float32)

  def centre(self) -> np.ndarray:
    """round(divisor·shift) as uint8: the raw value (per position or channel) mapped to 0."""
    return np.clip(np.round(self.divisor * np.asarray(self.shift, np.float64)), 0,
                   255).astype(np.uint8)


def channel_moments(images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
  """(μ, σ), float64 [C]: the mean and (population) standard deviation of each channel of the
  uint8 images [N, H, W, C] on the [0, 1] scale, from exact per-channel histograms (CHUNK images
  at a time: no float copy of the images)."""
  c = images.shape[-1]
  counts = np.zeros((c, 256), np.int64)
  for start in range(0, len(images), CHUNK):
    chunk = images[start:start + CHUNK].reshape(-1, c)
    for channel in range(c):
      counts[channel] += np.bincount(chunk[:, channel], minlength=256)
  values = np.arange(256) / 255
  n = counts.sum(axis=1)
  mean = counts @ values / n
  variance = counts @ values**2 / n - mean**2
  return mean, np.sqrt(np.maximum(variance, 0))


def of(method: str, train_images: np.ndarray, mean_image: np.ndarray) -> Normalization:
  """The Normalization `method` (one of METHODS) of the uint8 training images [N, H, W, C];
  `mean_image` is theirs (`images.mean_image_of`)."""
  if method == "mean_image":
    return Normalization(256.0, np.asarray(mean_image, np.float32))
  if method == "per_channel":
    mean, std = channel_moments(train_images)
    return Normalization(255.0, mean.astype(np.float32),
                         np.where(std > 0, std, 1).astype(np.float32))
  if method == "none":
    return Normalization(255.0, np.zeros(train_images.shape[-1], np.float32))
  raise ValueError(f"unknown normalisation {method!r}; one of {', '.join(METHODS)}")
