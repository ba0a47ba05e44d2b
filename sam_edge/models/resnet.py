"""CIFAR-style residual networks with BatchNorm (flax linen): ResNet-20/32, WRN-16-8/28-10 and
the ResNet-18 of width k.

Every model maps NHWC float32 images ``x`` ``[B, H, W, C]`` (any ``H, W >= 8``, any ``C``) to
logits ``[B, num_classes]`` through ``model.apply(variables, x, train)``, with variables
``{"params", "batch_stats"}``. Notation: ``conv_s`` is a bias-free 3x3 convolution with stride
``s`` and one pixel of zero padding on every side (output size ``ceil(H / s)``, window of output
``i`` centred on input ``s i``); ``σ`` the activation (relu by default, any key of
``vision.ACTIVATIONS``); ``BN`` batch normalisation over (B, H, W) per channel,

  BN(h) = γ (h − μ) / sqrt(v + 1e-5) + β,

with (μ, v) the batch mean and (biased) variance in train mode, which also update the running
statistics ``r ← 0.9 r + 0.1 (μ, v)``, and the running statistics themselves in eval mode.

ResNet-(6n+2) (He et al. 2016, "Deep Residual Learning", Sec. 4.2, the CIFAR variant):

  h = σ(BN(conv_1(x, 16)))
  3 stages of n basic blocks with c = 16, 32, 64 channels; the first block of stages 2 and 3
  has stride 2:   h ← σ(BN(conv_1(σ(BN(conv_s(h, c))), c)) + shortcut(h))
  logits = Dense(mean_{H,W} h)

with option A shortcuts (parameter-free, as the paper's CIFAR networks): the identity, or when
the shape changes ``shortcut(h) = pad_c(h[:, ::2, ::2, :])``, the subsampled input with zero
channels appended up to c. ResNet20 has n = 3, ResNet32 n = 5. Parameters (C input channels,
K classes): 9·16·C + 32 (stem) + n·4672 + (n − 1)·18560 + 13952 + (n − 1)·73984 + 55552
(stages) + 65 K (dense) — 269,722 (ResNet20) and 464,154 (ResNet32) for CIFAR-10 (C = 3,
K = 10), the paper's 0.27M and 0.46M.

WRN-d-k (Zagoruyko & Komodakis 2016, "Wide Residual Networks"; pre-activation wide basic
blocks, dropout off), n = (d − 4) / 6 blocks per stage:

  h = conv_1(x, 16)
  3 stages of n blocks with c = 16k, 32k, 64k channels, strides 1, 2, 2 on the first block:
      o = σ(BN(h));   h ← conv_1(σ(BN(conv_s(o, c))), c) + shortcut
      shortcut = h if the shape is kept, else conv1x1_s(o, c) (bias-free 1x1 projection of o)
  logits = Dense(mean_{H,W} σ(BN(h)))

WRN16_8: 10,961,370 parameters and WRN28_10: 36,479,194 for CIFAR-10 (11.0M and 36.5M).

ResNet-18 of width k (the CIFAR ResNet-18 of the taxonomy, Yang et al. 2021, and of
kuangliu/pytorch-cifar; post-activation basic blocks, [2, 2, 2, 2], 3x3 stem, no max-pool):

  h = σ(BN(conv_1(x, k)))
  4 stages of 2 blocks with c = k, 2k, 4k, 8k channels, strides 1, 2, 2, 2 on the first block:
      h ← σ(BN(conv_1(σ(BN(conv_s(h, c))), c)) + shortcut)
      shortcut = h if the shape is kept, else BN(conv1x1_s(h, c))   (option B)
  logits = Dense(mean_{H,W} h)

Parameters (C input channels, K classes): 2724 k² + (9 C + 150 + 8 K) k + K; 11,173,962 for
k = 64 on CIFAR-10, the standard ResNet-18's 11.2M.

Initialisation: convolution kernels He-normal, N(0, 2 / fan_in) with fan_in = kh·kw·c_in
(He et al. 2015); BN γ = 1, β = 0, running mean 0 and variance 1; the Dense layer flax's
default (lecun_normal kernel, zero bias).
"""

from typing import Callable

import flax.linen as nn
import jax
import jax.numpy as jnp

from sam_edge.models.vision import ACTIVATIONS

BN_MOMENTUM = 0.9
BN_EPSILON = 1e-5
HE_NORMAL = nn.initializers.variance_scaling(2.0, "fan_in", "normal")    # N(0, 2 / fan_in)
_PAD_1 = ((1, 1), (1, 1))


def conv3x3(features: int, stride: int, name: str) -> nn.Conv:
  """Bias-free 3x3 convolution, stride ``stride``, one pixel of zero padding each side."""
  return nn.Conv(features, (3, 3), strides=(stride, stride), padding=_PAD_1, use_bias=False,
                 kernel_init=HE_NORMAL, name=name)


def conv1x1(features: int, stride: int, name: str) -> nn.Conv:
  """Bias-free 1x1 convolution with stride ``stride`` (no padding): the projection shortcut."""
  return nn.Conv(features, (1, 1), strides=(stride, stride), padding="VALID", use_bias=False,
                 kernel_init=HE_NORMAL, name=name)


def batch_norm(train: bool, name: str, zero_scale: bool = False) -> nn.BatchNorm:
  """BatchNorm over (B, H, W) per channel: batch statistics when ``train`` (updating the running
  ones with momentum 0.9), the running statistics otherwise; eps 1e-5. The variance is computed
  as mean((h − μ)²), not mean(h²) − μ², so that Hessians through it keep their precision. γ
  starts at 1, or at 0 with ``zero_scale`` (a residual branch's last BatchNorm: the block then
  starts as its shortcut)."""
  scale_init = nn.initializers.zeros if zero_scale else nn.initializers.ones
  return nn.BatchNorm(use_running_average=not train, momentum=BN_MOMENTUM, epsilon=BN_EPSILON,
                      use_fast_variance=False, scale_init=scale_init, name=name)


def activation_fn(name: str) -> Callable[[jax.Array], jax.Array]:
  """``vision.ACTIVATIONS[name]``; ValueError naming the choices for an unknown name."""
  if name not in ACTIVATIONS:
    raise ValueError(f"Unknown activation {name!r}; expected one of {tuple(ACTIVATIONS)}")
  return ACTIVATIONS[name]


def zero_pad_shortcut(x: jax.Array, features: int, stride: int) -> jax.Array:
  """Option A: ``x[:, ::stride, ::stride, :]`` with zero channels appended up to ``features``."""
  x = x[:, ::stride, ::stride, :]
  extra = features - x.shape[-1]
  if extra < 0:
    raise ValueError(f"option A shortcut cannot shrink {x.shape[-1]} channels to {features}")
  return jnp.pad(x, ((0, 0), (0, 0), (0, 0), (0, extra))) if extra else x


def global_average_pool(x: jax.Array) -> jax.Array:
  """``[B, H, W, C] -> [B, C]``, the mean over H and W."""
  return jnp.mean(x, axis=(1, 2))


def check_input(x: jax.Array) -> None:
  """ValueError unless ``x`` is ``[B, H, W, C]`` with ``H, W >= 8``."""
  if x.ndim != 4 or x.shape[1] < 8 or x.shape[2] < 8:
    raise ValueError(f"expected NHWC images of at least 8x8 pixels, got shape {x.shape}")


def residual_branch(x: jax.Array, features: int, stride: int, activation: str,
                    train: bool) -> jax.Array:
  """The basic blocks' residual branch ``BN(conv_1(σ(BN(conv_s(x)))))``, its layers named conv1,
  bn1, conv2, bn2 in the calling module (call it from an ``nn.compact`` method)."""
  y = activation_fn(activation)(batch_norm(train, "bn1")(conv3x3(features, stride, "conv1")(x)))
  return batch_norm(train, "bn2")(conv3x3(features, 1, "conv2")(y))


class BasicBlock(nn.Module):
  """He et al.'s basic block: ``σ(BN(conv_1(σ(BN(conv_s(h))))) + shortcut_A(h))``."""

  features: int
  stride: int
  activation: str = "relu"

  @nn.compact
  def __call__(self, x: jax.Array, train: bool) -> jax.Array:
    y = residual_branch(x, self.features, self.stride, self.activation, train)
    return activation_fn(self.activation)(y + zero_pad_shortcut(x, self.features, self.stride))


class ResNet(nn.Module):
  """CIFAR ResNet-(6n+2), option A shortcuts (see the module docstring).

  ``blocks_per_stage`` is n (3 for ResNet20, 5 for ResNet32), ``num_classes`` the number of
  output logits and ``activation`` a key of ``vision.ACTIVATIONS``.
  """

  blocks_per_stage: int
  num_classes: int = 10
  activation: str = "relu"

  @nn.compact
  def __call__(self, x: jax.Array, train: bool) -> jax.Array:
    """Logits ``[B, num_classes]`` for images ``[B, H, W, C]``; ``train`` selects batch
    statistics (and updates the running ones, given ``mutable=["batch_stats"]``)."""
    check_input(x)
    if self.blocks_per_stage < 1:
      raise ValueError(f"ResNet needs at least one block per stage, got {self.blocks_per_stage}")
    act = activation_fn(self.activation)
    h = act(batch_norm(train, "stem_bn")(conv3x3(16, 1, "stem_conv")(x)))
    for stage, features in enumerate((16, 32, 64)):
      for block in range(self.blocks_per_stage):
        stride = 2 if stage > 0 and block == 0 else 1
        h = BasicBlock(features, stride, self.activation, name=f"stage{stage}_block{block}")(
            h, train)
    return nn.Dense(self.num_classes, name="head")(global_average_pool(h))


class WideBlock(nn.Module):
  """Pre-activation wide basic block: with ``o = σ(BN(h))``,
  ``conv_1(σ(BN(conv_s(o)))) + (h, or conv1x1_s(o) when the shape changes)``."""

  features: int
  stride: int
  activation: str = "relu"

  @nn.compact
  def __call__(self, x: jax.Array, train: bool) -> jax.Array:
    act = activation_fn(self.activation)
    o = act(batch_norm(train, "bn1")(x))
    y = conv3x3(self.features, self.stride, "conv1")(o)
    y = conv3x3(self.features, 1, "conv2")(act(batch_norm(train, "bn2")(y)))
    if self.stride != 1 or x.shape[-1] != self.features:
      return y + conv1x1(self.features, self.stride, "projection")(o)
    return y + x


class WideResNet(nn.Module):
  """WRN-depth-widen_factor, dropout off (see the module docstring).

  ``depth`` is the total depth d, with (d − 4) divisible by 6 and d >= 10; ``widen_factor`` is k,
  the stages having 16k, 32k and 64k channels. ``num_classes`` is the number of output logits and
  ``activation`` a key of ``vision.ACTIVATIONS``.
  """

  depth: int
  widen_factor: int
  num_classes: int = 10
  activation: str = "relu"

  @nn.compact
  def __call__(self, x: jax.Array, train: bool) -> jax.Array:
    """Logits ``[B, num_classes]`` for images ``[B, H, W, C]`` (see ``ResNet.__call__``)."""
    check_input(x)
    if self.depth < 10 or (self.depth - 4) % 6:
      raise ValueError(f"WideResNet depth must be 6n + 4 with n >= 1, got {self.depth}")
    if self.widen_factor < 1:
      raise ValueError(f"WideResNet widen_factor must be >= 1, got {self.widen_factor}")
    act = activation_fn(self.activation)
    h = conv3x3(16, 1, "stem_conv")(x)
    for stage, width in enumerate((16, 32, 64)):
      for block in range((self.depth - 4) // 6):
        stride = 2 if stage > 0 and block == 0 else 1
        h = WideBlock(width * self.widen_factor, stride, self.activation,
                      name=f"stage{stage}_block{block}")(h, train)
    h = act(batch_norm(train, "final_bn")(h))
    return nn.Dense(self.num_classes, name="head")(global_average_pool(h))


class ResNet18Block(BasicBlock):
  """Basic block with a projection shortcut where the shape changes:
  ``σ(BN(conv_1(σ(BN(conv_s(h))))) + (h, or BN(conv1x1_s(h))))`` (BasicBlock's fields)."""

  @nn.compact
  def __call__(self, x: jax.Array, train: bool) -> jax.Array:
    y = residual_branch(x, self.features, self.stride, self.activation, train)
    if self.stride != 1 or x.shape[-1] != self.features:
      x = batch_norm(train, "projection_bn")(conv1x1(self.features, self.stride, "projection")(x))
    return activation_fn(self.activation)(y + x)


class ResNet18(nn.Module):
  """CIFAR ResNet-18 with channel widths ``(k, 2k, 4k, 8k)``, ``k = width`` (module docstring)."""

  width: int = 64
  num_classes: int = 10
  activation: str = "relu"

  @nn.compact
  def __call__(self, x: jax.Array, train: bool) -> jax.Array:
    """Logits ``[B, num_classes]`` for images ``[B, H, W, C]`` (see ``ResNet.__call__``)."""
    check_input(x)
    if self.width < 1:
      raise ValueError(f"ResNet18 width must be >= 1, got {self.width}")
    act = activation_fn(self.activation)
    h = act(batch_norm(train, "stem_bn")(conv3x3(self.width, 1, "stem_conv")(x)))
    for stage in range(4):
      for block in range(2):
        stride = 2 if stage > 0 and block == 0 else 1
        h = ResNet18Block(self.width * 2 ** stage, stride, self.activation,
                          name=f"stage{stage}_block{block}")(h, train)
    return nn.Dense(self.num_classes, name="head")(global_average_pool(h))

