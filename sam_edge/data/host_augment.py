"""Streamed images on the host: decoding, and the ImageNet crops at side S (`--image_size`), in
NumPy and Pillow (no jax: grain's worker processes run them).

Training (Inception-style random-resized crop, then a horizontal flip), with the example's own
generator (`stream_order.example_rng`): for up to ATTEMPTS tries draw an area fraction
a ~ U(0.08, 1) and a log aspect ratio log r ~ U(log 3/4, log 4/3); the crop is
w = round(√(a H W r)) wide, h = round(√(a H W / r)) high; the first that fits (w ≤ W, h ≤ H) is
placed at a uniform offset. If none fits, the centre crop of the largest window whose ratio is
clamped to [3/4, 4/3]. The window is resized to S×S (bilinear), then flipped left-right with
probability 1/2.

Evaluation: the image resized (bilinear) so that its shorter side is round(S / 0.875), then the
centre S×S window (crop fraction 0.875).
"""

import io
import math
from typing import Any, Optional

import numpy as np

SCALE = (0.08, 1.0)
RATIO = (3 / 4, 4 / 3)
ATTEMPTS = 10
CROP_FRACTION = 0.875


def decode(image: Any, channels: Optional[int] = None) -> np.ndarray:
  """uint8 [H, W, C] of an encoded image (JPEG, PNG: bytes) or of raw pixels ([H, W] or
  [H, W, C]); with `channels` 1 or 3, converted to that many channels. Without, an encoded image
  is grey (L) or RGB: a palette, an alpha channel or CMYK becomes RGB, so that the images of one
  batch stack."""
  if isinstance(image, (bytes, bytearray, memoryview, np.bytes_)):
    from PIL import Image  # pylint: disable=import-outside-toplevel
    with Image.open(io.BytesIO(bytes(image))) as opened:
      kept = opened.mode if opened.mode in ("L", "RGB") else "RGB"
      mode = {1: "L", 3: "RGB"}.get(channels or 0, kept)
      pixels = np.asarray(opened.convert(mode) if opened.mode != mode else opened)
  else:
    pixels = np.asarray(image, np.uint8)
  if pixels.ndim == 2:
    pixels = pixels[:, :, None]
  if channels == 3 and pixels.shape[-1] == 1:
    pixels = np.repeat(pixels, 3, axis=-1)
  return pixels


def resize(image: np.ndarray, height: int, width: int) -> np.ndarray:
  """uint8 [height, width, C]: `image` [H, W, C] resized bilinearly (Pillow)."""
  from PIL import Image  # pylint: disable=import-outside-toplevel
  if image.shape[:2] == (height, width):
    return image
  channels = image.shape[-1]
  pil = Image.fromarray(image[:, :, 0] if channels == 1 else image)
  out = np.asarray(pil.resize((width, height), Image.BILINEAR))
  return out[:, :, None] if out.ndim == 2 else out


def crop_window(height: int, width: int, rng: np.random.Generator) -> tuple[int, int, int, int]:
  """(top, left, h, w) of the random-resized crop of an H×W image (module doc)."""
  area = height * width
  for _ in range(ATTEMPTS):
    target = area * rng.uniform(*SCALE)
    ratio = math.exp(rng.uniform(math.log(RATIO[0]), math.log(RATIO[1])))
    w = int(round(math.sqrt(target * ratio)))
    h = int(round(math.sqrt(target / ratio)))
    if 0 < w <= width and 0 < h <= height:
      top = int(rng.integers(0, height - h + 1))
      left = int(rng.integers(0, width - w + 1))
      return top, left, h, w
  ratio = width / height
  if ratio < RATIO[0]:
    w, h = width, int(round(width / RATIO[0]))
  elif ratio > RATIO[1]:
    h, w = height, int(round(height * RATIO[1]))
  else:
    h, w = height, width
  return (height - h) // 2, (width - w) // 2, h, w


def train_crop(image: np.ndarray, size: int, rng: np.random.Generator) -> np.ndarray:
  """uint8 [S, S, C]: the random-resized crop of `image` [H, W, C], flipped with probability 1/2
  (module doc)."""
  top, left, h, w = crop_window(image.shape[0], image.shape[1], rng)
  out = resize(image[top:top + h, left:left + w], size, size)
  return out[:, ::-1] if rng.uniform() < 0.5 else out


def centre_crop(image: np.ndarray, size: int) -> np.ndarray:
  """uint8 [S, S, C]: resize the shorter side to round(S/0.875), then the centre S×S window."""
  height, width = image.shape[:2]
  shorter = int(round(size / CROP_FRACTION))
  scale = shorter / min(height, width)
  h, w = max(size, int(round(height * scale))), max(size, int(round(width * scale)))
  resized = resize(image, h, w)
  top, left = (h - size) // 2, (w - size) // 2
  return resized[top:top + size, left:left + size]
