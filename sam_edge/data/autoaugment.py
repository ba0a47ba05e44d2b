"""AutoAugment's CIFAR-10 policy (Cubuk et al. 2019, "AutoAugment: Learning Augmentation
Strategies from Data", the 25 sub-policies of its reduced-CIFAR-10 table), per example, on device.

For each example of a uint8 batch [B, H, W, C] independently:

  i ~ uniform on the 25 sub-policies; for its two ops (name, p, level) in turn:
    with probability p:  x = op(x, v)  with v = ARGUMENT[name](level), negated with probability
                                       1/2 for the signed ops (Rotate, ShearY, TranslateX/Y)

The levels 0..9 map to the ops' arguments (`autoaugment_ops`) as AutoAugment's own CIFAR code
does (tensorflow/models research/autoaugment `augmentation_transforms.py`, PARAMETER_MAX = 10):

  Rotate 3L degrees · ShearY 0.03L · TranslateX/Y L pixels · Posterize 4 − ⌊4L/10⌋ bits ·
  Solarize threshold 256 − ⌊256L/10⌋ · Color, Contrast, Brightness, Sharpness factor 0.1 + 0.18L
  (passed as the whole percentage 10 + 18L: the blends are exact integer arithmetic, the same
  bytes on every device) · AutoContrast, Equalize, Invert: none.

Two differences from google-research/sam's code, chosen on purpose: it draws from the 95
sub-policies of AutoAugment's released `good_policies` (its `policies.policy_cifar`), of which
the paper's 25 (here) are a selection; and its ops come from the TPU ImageNet code, whose
translations of up to 250·L/10 pixels and cutouts of up to 200 pixels blank a 32x32 image
(here: AutoAugment's CIFAR magnitudes). The geometric ops fill with 128, as SAM's code does.

On one-channel images (MNIST, Fashion-MNIST) the policy applies as it stands: Color is then the
identity (a grey image is its own grey version) and every other op acts on the one channel, as
PIL's ops on an "L" image do. The policy was learned on CIFAR-10; on other data it is a choice of
the user's, not a tuned policy.
"""

import jax
import jax.numpy as jnp
import numpy as np

from sam_edge.data import autoaugment_ops as ops

# (name, probability, level): the paper's reduced-CIFAR-10 policy, row by row (torchvision's
# AutoAugmentPolicy.CIFAR10 holds the same table); None: the op takes no magnitude.
CIFAR10_POLICY = (
    (("Invert", 0.1, None), ("Contrast", 0.2, 6)),
    (("Rotate", 0.7, 2), ("TranslateX", 0.3, 9)),
    (("Sharpness", 0.8, 1), ("Sharpness", 0.9, 3)),
    (("ShearY", 0.5, 8), ("TranslateY", 0.7, 9)),
    (("AutoContrast", 0.5, None), ("Equalize", 0.9, None)),
    (("ShearY", 0.2, 7), ("Posterize", 0.3, 7)),
    (("Color", 0.4, 3), ("Brightness", 0.6, 7)),
    (("Sharpness", 0.3, 9), ("Brightness", 0.7, 9)),
    (("Equalize", 0.6, None), ("Equalize", 0.5, None)),
    (("Contrast", 0.6, 7), ("Sharpness", 0.6, 5)),
    (("Color", 0.7, 7), ("TranslateX", 0.5, 8)),
    (("Equalize", 0.3, None), ("AutoContrast", 0.4, None)),
    (("TranslateY", 0.4, 3), ("Sharpness", 0.2, 6)),
    (("Brightness", 0.9, 6), ("Color", 0.2, 8)),
    (("Solarize", 0.5, 2), ("Invert", 0.0, None)),
    (("Equalize", 0.2, None), ("AutoContrast", 0.6, None)),
    (("Equalize", 0.2, None), ("Equalize", 0.6, None)),
    (("Color", 0.9, 9), ("Equalize", 0.6, None)),
    (("AutoContrast", 0.8, None), ("Solarize", 0.2, 8)),
    (("Brightness", 0.1, 3), ("Color", 0.7, 0)),
    (("Solarize", 0.4, 5), ("AutoContrast", 0.9, None)),
    (("TranslateY", 0.9, 9), ("TranslateY", 0.7, 9)),
    (("AutoContrast", 0.9, None), ("Solarize", 0.8, 3)),
    (("Equalize", 0.8, None), ("Invert", 0.1, None)),
    (("TranslateY", 0.7, 9), ("AutoContrast", 0.9, None)),
)

_enhance = lambda level: 10 + 18 * level           # the factor 0.1 + 0.18L, in percent
# name: (op, level -> argument, signed)
OPS = {
    "Invert": (ops.invert, None, False),
    "AutoContrast": (ops.autocontrast, None, False),
    "Equalize": (ops.equalize, None, False),
    "Posterize": (ops.posterize, lambda level: 4 - (4 * level) // 10, False),
    "Solarize": (ops.solarize, lambda level: 256 - (256 * level) // 10, False),
    "Color": (ops.color, _enhance, False),
    "Contrast": (ops.contrast, _enhance, False),
    "Brightness": (ops.brightness, _enhance, False),
    "Sharpness": (ops.sharpness, _enhance, False),
    "Rotate": (ops.rotate, lambda level: 3 * level, True),
    "ShearY": (ops.shear_y, lambda level: 0.03 * level, True),
    "TranslateX": (ops.translate_x, lambda level: level, True),
    "TranslateY": (ops.translate_y, lambda level: level, True),
}
NAMES = tuple(OPS)


def policy_arrays() -> dict[str, np.ndarray]:
  """CIFAR10_POLICY as arrays [25, 2] (sub-policy, op): `op` (index into NAMES),
  `probability`, `argument` (the op's v at its level; 0 for the ops without one) and `signed`."""
  def field(fn, dtype):
    return np.array([[fn(*step) for step in sub] for sub in CIFAR10_POLICY], dtype)
  argument = lambda name, p, level: 0.0 if OPS[name][1] is None else OPS[name][1](level)
  return {"op": field(lambda name, p, level: NAMES.index(name), np.int32),
          "probability": field(lambda name, p, level: p, np.float32),
          "argument": field(argument, np.float32),
          "signed": field(lambda name, p, level: OPS[name][2], bool)}


def draw(key: jax.Array, batch_size: int) -> dict[str, jax.Array]:
  """The random choices: `subpolicy` int32 [B], `uniform` float32 [B, 2] (op j applies when
  uniform[:, j] < its probability) and `negate` bool [B, 2] (a signed op's argument is negated)."""
  k_policy, k_apply, k_sign = jax.random.split(key, 3)
  return {"subpolicy": jax.random.randint(k_policy, (batch_size,), 0, len(CIFAR10_POLICY),
                                          jnp.int32),
          "uniform": jax.random.uniform(k_apply, (batch_size, 2), jnp.float32),
          "negate": jax.random.bernoulli(k_sign, 0.5, (batch_size, 2))}


def apply_op(x: jax.Array, op: jax.Array, argument: jax.Array) -> jax.Array:
  """OPS[NAMES[op]](x, argument) for one image x [H, W, C] and a traced op index."""
  branches = [OPS[name][0] for name in NAMES]
  return jax.lax.switch(op, branches, x, argument)


def apply(images: jax.Array, choices: dict[str, jax.Array]) -> jax.Array:
  """Deterministic part of `autoaugment`: each example's sub-policy, ops applied or not and signs
  as `choices` (`draw`) say."""
  table = {name: jnp.asarray(value) for name, value in policy_arrays().items()}

  def one(x, subpolicy, uniform, negate):
    def step(x, j):                      # the sub-policy's op j (a loop: its ops compile once)
      argument = table["argument"][subpolicy, j]
      argument = jnp.where(table["signed"][subpolicy, j] & negate[j], -argument, argument)
      changed = apply_op(x, table["op"][subpolicy, j], argument)
      return jnp.where(uniform[j] < table["probability"][subpolicy, j], changed, x), None
    return jax.lax.scan(step, x, jnp.arange(2))[0]
  return jax.vmap(one)(images, choices["subpolicy"], choices["uniform"], choices["negate"])


def autoaugment(images: jax.Array, key: jax.Array) -> jax.Array:
  """The CIFAR-10 AutoAugment policy (module doc) on a uint8 batch [B, H, W, C], C = 1 or 3; the
  same shape and dtype back. Jittable."""
  if images.ndim != 4 or images.dtype != jnp.uint8:
    raise ValueError(f"autoaugment expects uint8 [B, H, W, C] images, got {images.dtype} "
                     f"{images.shape}")
  return apply(images, draw(key, images.shape[0]))
