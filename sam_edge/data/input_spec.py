"""What `--augment` and `--normalize` name, their defaults and checks, without jax (the ops:
`augment_pipeline`, the maps: `normalize`).

`--augment` is `none`, or a comma list of ops that run in the SAM papers' order whatever the
order written:

  ORDER = autoaugment → flip → crop → brightness → cutout

* google-research/sam (`dataset_source.py`): per image AutoAugment first, then the random flip
  and the padded random crop; then the batch is normalised and cutout zeroes a square last.
  AutoAugment's own CIFAR code (tensorflow/models `research/autoaugment/data_utils.py`) does the
  same: policy, flip, zero-pad crop, cutout.
* sayakpaul/Sharpness-Aware-Minimization-TensorFlow: the padded random crop, then
  `tf.image.random_brightness` on [0, 1] inputs, clipped.

Brightness runs after the crop (SAM-TF's order) and before cutout, so that the cut square keeps
its fill value, as SAM's cutout, the last op, keeps its zeros. `flip_crop` is the old name of
`flip,crop` and means exactly it.
"""

NONE = "none"
ORDER = ("autoaugment", "flip", "crop", "brightness", "cutout")
ALIASES = {"flip_crop": ("flip", "crop")}
NAMES = (NONE, *ORDER, *ALIASES)
FLAG = "augment"
CUTOUT_SIZE = 16                    # google-research/sam's --cutout_length
BRIGHTNESS_DELTA = 0.5              # SAM-TF's max_delta
NORMALIZE_METHODS = ("mean_image", "per_channel", "none")     # `normalize`, the first the default


def _split(text: str) -> list[str]:
  """The comma list's names, aliases expanded, in the order written (blank names kept)."""
  out = []
  for name in (n.strip() for n in text.split(",")):
    out += ALIASES.get(name, (name,))
  return out


def list_problems(text: str) -> list[str]:
  """The problems of the `--augment` value `text`: unknown or blank names, `none` with other
  names, a name given twice (`flip_crop` counts as flip and crop)."""
  names = _split(text)
  flag = f"--{FLAG}={text}"
  if "" in names:
    return [f"{flag}: an empty name in the comma list"]
  unknown = [n for n in names if n not in NAMES]
  if unknown:
    return [f"{flag}: unknown augmentation {', '.join(repr(n) for n in unknown)}; use none or "
            f"a comma list of {', '.join(ORDER)} (flip_crop is flip,crop)"]
  if NONE in names and len(names) > 1:
    return [f"{flag}: none cannot be combined with other augmentations"]
  twice = sorted({n for n in names if names.count(n) > 1}, key=ORDER.index)
  if twice:
    return [f"{flag} names {', '.join(twice)} twice"]
  return []


def parse(text: str) -> tuple[str, ...]:
  """The ops of `text` in ORDER; () for `none`. Raises ValueError (the problem line) on a bad
  list."""
  problems = list_problems(text)
  if problems:
    raise ValueError(problems[0])
  names = set(_split(text)) - {NONE}
  return tuple(n for n in ORDER if n in names)


def problems(text: str, cutout_size: int, brightness_delta: float, image_side: int | None,
             dataset: str = "") -> list[str]:
  """Every problem of the augmentation flags: the list (`list_problems`), --cutout_size outside
  [1, image_side] (only >= 1 when the side is unknown), --brightness_delta outside [0, 1]."""
  p = list_problems(text)
  if cutout_size < 1 or (image_side is not None and cutout_size > image_side):
    bound = (f"[1, {image_side}] (the {image_side}x{image_side} images of {dataset})"
             if image_side is not None else "[1, the image side]")
    p.append(f"--cutout_size must lie in {bound}, got {cutout_size}")
  if not 0 <= brightness_delta <= 1:
    p.append(f"--brightness_delta must lie in [0, 1] (a shift on the [0, 1] pixel scale), got "
             f"{brightness_delta}")
  return p
