"""AutoAugment's image operations on one uint8 image x [H, W, C] (C = 1 or 3), as pure jax
functions `op(x, v) -> uint8 [H, W, C]` of an argument v (ignored by the ops without one).
Jittable and vmappable: `autoaugment` maps them over a batch.

The colour ops are PIL's, which AutoAugment's code calls (tensorflow/models research/autoaugment
`augmentation_transforms.py`), written out and computed exactly, in integers: PIL's bytes, but
where PIL's own float rounding (float32 blend factors, AutoContrast's float64 scale) lands one
off the exact value (tests compare):

  blend(d, x, f) = ⌊clip(d + f·(x − d), 0, 255)⌋    (PIL's `Image.blend`; in integers, exact,
                   f = v/100 with v a whole percentage, as the policy's factors are)
  grey(x)        = (19595·R + 38470·G + 7471·B + 2^15) >> 16   (PIL's "L"; x itself when C = 1)
  invert         255 − x
  posterize v    x AND NOT (2^(8−v) − 1): keep the v high bits
  solarize v     x if x < v else 255 − x                          (`dm_pix.solarize` on x/255)
  brightness v   blend(0, x, v/100)
  color v        blend(grey(x), x, v/100)   (the identity on one channel: x is its own grey)
  contrast v     blend(m, x, v/100), m = ⌊mean(grey(x)) + ½⌋
  sharpness v    blend(smooth(x), x, v/100), smooth = round(x ⊛ [[1,1,1],[1,5,1],[1,1,1]]/13)
                 inside, x on the one-pixel border (PIL's SMOOTH filter)
  autocontrast   per channel, lo = min, hi = max: (x − lo)·255 // (hi − lo), x if hi = lo
                 (PIL's float formula int(x·255/(hi−lo) − lo·255/(hi−lo)) computed exactly;
                 PIL's float64 rounding gives one less for about 0.4% of (lo, hi, x))
  equalize       per channel, PIL's: histogram h, n = H·W, s = (n − h[max x]) // 255;
                 x if s = 0, else lut[x] with lut[i] = min(255, (⌊s/2⌋ + Σ_{j<i} h[j]) // s)

The geometric ops pull each output pixel from the nearest input pixel (index coordinates,
`dm_pix.affine_transform` with order 0) and fill what comes from outside the image with
FILL = 128, google-research/sam's `replace_value`:

  translate_x v  out[y, x] = x[y, x + v]            translate_y v  out[y, x] = x[y + v, x]
  shear_y v      out[y, x] = x[round(y + v·x), x]   rotate v       `dm_pix.rotate` by v degrees
                                                                   about the image centre
"""

import dm_pix
import jax
import jax.numpy as jnp

FILL = 128.0
GREY_WEIGHTS = (19595, 38470, 7471)              # PIL's ITU-R 601-2 luma, in units of 2^-16


def _as_uint8(x: jax.Array) -> jax.Array:
  return jnp.clip(jnp.round(x), 0, 255).astype(jnp.uint8)


def blend(degenerate: jax.Array, x: jax.Array, percent: jax.Array) -> jax.Array:
  """⌊clip(d + f·(x − d), 0, 255)⌋ as uint8 with f = percent/100, in integers:
  clip((100·d + percent·(x − d)) // 100, 0, 255) (PIL's Image.blend(d, x, f), exactly)."""
  d = degenerate.astype(jnp.int32)
  p = jnp.round(percent).astype(jnp.int32)
  return jnp.clip((100 * d + p * (x.astype(jnp.int32) - d)) // 100, 0, 255).astype(jnp.uint8)


def grey(x: jax.Array) -> jax.Array:
  """PIL's "L" conversion [H, W, 1]: (19595 R + 38470 G + 7471 B + 2^15) >> 16; x when C = 1."""
  if x.shape[-1] == 1:
    return x
  if x.shape[-1] != 3:
    raise ValueError(f"AutoAugment's colour ops take 1 or 3 channels, got {x.shape[-1]}")
  weighted = sum(w * x[..., c].astype(jnp.int32) for c, w in enumerate(GREY_WEIGHTS))
  return ((weighted + (1 << 15)) >> 16).astype(jnp.uint8)[..., None]


def invert(x: jax.Array, v: jax.Array) -> jax.Array:
  """255 − x."""
  del v
  return 255 - x


def posterize(x: jax.Array, v: jax.Array) -> jax.Array:
  """Keeps the v high bits: x AND NOT (2^(8−v) − 1)."""
  low_bits = (1 << (8 - v.astype(jnp.int32))) - 1
  return (x.astype(jnp.int32) & ~low_bits).astype(jnp.uint8)


def solarize(x: jax.Array, v: jax.Array) -> jax.Array:
  """x if x < v else 255 − x (`dm_pix.solarize` on the [0, 1] scale)."""
  return _as_uint8(255 * dm_pix.solarize(x.astype(jnp.float32) / 255, v / 255))


def brightness(x: jax.Array, v: jax.Array) -> jax.Array:
  """blend(0, x, v/100) = ⌊clip(v·x/100, 0, 255)⌋."""
  return blend(jnp.zeros_like(x), x, v)


def color(x: jax.Array, v: jax.Array) -> jax.Array:
  """blend(grey(x), x, v/100): towards (v < 100) or away from (v > 100) the grey image."""
  return blend(jnp.broadcast_to(grey(x), x.shape), x, v)


def contrast(x: jax.Array, v: jax.Array) -> jax.Array:
  """blend(m, x, v/100) with m = ⌊mean(grey(x)) + ½⌋, a uniform grey image."""
  g = grey(x)
  m = (2 * jnp.sum(g.astype(jnp.int32)) + g.size) // (2 * g.size)     # ⌊mean + ½⌋, exactly
  return blend(jnp.full(x.shape, m), x, v)


def smooth(x: jax.Array) -> jax.Array:
  """PIL's SMOOTH filter: round(Σ w·x / 13) with w = [[1,1,1],[1,5,1],[1,1,1]] inside, x on the
  one-pixel border."""
  h, w, _ = x.shape
  xi = x.astype(jnp.int32)
  total = sum(xi[dy:h - 2 + dy, dx:w - 2 + dx] for dy in range(3) for dx in range(3))
  total = total + 4 * xi[1:h - 1, 1:w - 1]                       # the centre weighs 5
  inner = ((2 * total + 13) // 26).astype(jnp.uint8)             # round(total / 13), no ties
  return x.at[1:h - 1, 1:w - 1].set(inner)


def sharpness(x: jax.Array, v: jax.Array) -> jax.Array:
  """blend(smooth(x), x, v/100): blurred (v < 100) or sharpened (v > 100)."""
  return blend(smooth(x), x, v)


def _autocontrast_channel(c: jax.Array) -> jax.Array:
  lo, hi = jnp.min(c).astype(jnp.int32), jnp.max(c).astype(jnp.int32)
  stretched = (c.astype(jnp.int32) - lo) * 255 // jnp.maximum(hi - lo, 1)
  return jnp.where(hi > lo, stretched, c).astype(jnp.uint8)


def autocontrast(x: jax.Array, v: jax.Array) -> jax.Array:
  """Per channel: (x − min)·255 // (max − min); x where max = min."""
  del v
  return jax.vmap(_autocontrast_channel, in_axes=-1, out_axes=-1)(x)


def _equalize_channel(c: jax.Array) -> jax.Array:
  ci = c.astype(jnp.int32)
  histogram = jnp.zeros(256, jnp.int32).at[ci.ravel()].add(1)
  step = (c.size - histogram[jnp.max(ci)]) // 255
  below = jnp.cumsum(histogram) - histogram                      # Σ_{j<i} h[j]
  lut = jnp.minimum((step // 2 + below) // jnp.maximum(step, 1), 255)
  return jnp.where(step > 0, lut[ci], ci).astype(jnp.uint8)


def equalize(x: jax.Array, v: jax.Array) -> jax.Array:
  """Per channel: PIL's histogram equalisation (module doc)."""
  del v
  return jax.vmap(_equalize_channel, in_axes=-1, out_axes=-1)(x)


def _pull(x: jax.Array, matrix: jax.Array, offset: jax.Array) -> jax.Array:
  """out[o] = x[round(matrix·o + offset)] over (y, x, channel) index coordinates; FILL outside.
  The coordinates' product in full float32 (no TF32 on GPUs: the same pixels on every device)."""
  with jax.default_matmul_precision("highest"):
    out = dm_pix.affine_transform(x.astype(jnp.float32), matrix, offset=offset, order=0,
                                  mode="constant", cval=FILL)
  return _as_uint8(out)


def translate_x(x: jax.Array, v: jax.Array) -> jax.Array:
  """out[y, x] = x[y, x + v] (v whole pixels; FILL from outside)."""
  return _pull(x, jnp.eye(3), jnp.stack([0.0, v, 0.0]))


def translate_y(x: jax.Array, v: jax.Array) -> jax.Array:
  """out[y, x] = x[y + v, x] (v whole pixels; FILL from outside)."""
  return _pull(x, jnp.eye(3), jnp.stack([v, 0.0, 0.0]))


def shear_y(x: jax.Array, v: jax.Array) -> jax.Array:
  """out[y, x] = x[round(y + v·x), x] (PIL's affine (1, 0, 0, v, 1, 0) about the top-left)."""
  matrix = jnp.eye(3).at[0, 1].set(v)
  return _pull(x, matrix, jnp.zeros(3))


def rotate(x: jax.Array, v: jax.Array) -> jax.Array:
  """x rotated by v degrees about its centre ((H − 1)/2, (W − 1)/2), nearest pixel, FILL
  outside (`dm_pix.rotate`; the sign of v is drawn at random by the policy)."""
  with jax.default_matmul_precision("highest"):
    out = dm_pix.rotate(x.astype(jnp.float32), jnp.deg2rad(v), order=0, mode="constant",
                        cval=FILL)
  return _as_uint8(out)
