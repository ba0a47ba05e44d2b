"""The ImageNet ResNet-50 with BatchNorm (flax linen): He et al. 2016, "Deep Residual Learning",
Table 1, in the layout of torchvision's `resnet50` and flax's `examples/imagenet` (v1.5: the
stride on the bottleneck's 3x3 convolution, not on its first 1x1).

It maps NHWC float32 images ``x`` ``[B, H, W, C]`` (any ``H, W >= 8``, any ``C``; 224x224x3 on
ImageNet) to logits ``[B, num_classes]`` through ``model.apply(variables, x, train)`` with
variables ``{"params", "batch_stats"}``, as the residual networks of `resnet` do, whose notation
and layers it shares: ``conv_k,s`` a bias-free k×k convolution with stride s and ⌊k/2⌋ pixels
of zero padding on every side (output side ⌈H / s⌉), ``σ`` the activation (relu by default),
``BN`` `resnet.batch_norm` (γ = 1 at the start) and ``BN₀`` the same with γ = 0 at the start:

  h = maxpool(σ(BN(conv_7,2(x, 64))))     maxpool: 3x3 windows, stride 2, one pixel of −∞
                                           padding on every side (output side ⌈H / 2⌉)
  4 stages of n = 3, 4, 6, 3 bottleneck blocks of width c = 64, 128, 256, 512; the first block
  of stages 2, 3 and 4 has stride s = 2, every other block s = 1:
      y = BN₀(conv_1,1(σ(BN(conv_3,s(σ(BN(conv_1,1(h, c))), c))), 4c))
      h ← σ(y + shortcut),   shortcut = h if the shape is kept, else BN(conv_1,s(h, 4c))
  logits = Dense(mean_{H,W} h)

The spatial side falls by 32 in all: 224 → 7 before the pooling, 32 → 1 on CIFAR-sized images.
``BN₀``, the last BatchNorm of each residual branch starting at γ = 0, makes every block start as
its shortcut (Goyal et al. 2017, "Accurate, Large Minibatch SGD"); google-research/sam's
`imagenet_models/resnet.py` and flax's `examples/imagenet` do the same (torchvision only with
``zero_init_residual=True``).

Parameters (C input channels, K classes): 3136 C + 128 (stem) + 23,498,496 (stages, the
projections included) + 2049 K (dense), i.e. 3136 C + 23,498,624 + 2049 K: 25,557,032 for
ImageNet (C = 3, K = 1000), torchvision's count, and 23,528,522 for CIFAR-10.

Initialisation as `resnet`'s: convolution kernels He-normal N(0, 2 / fan_in), BN β = 0, running
mean 0 and variance 1, the Dense layer flax's default (lecun_normal kernel, zero bias).
"""

import flax.linen as nn
import jax

from sam_edge.models import resnet

STAGES = ((3, 64), (4, 128), (6, 256), (3, 512))        # (blocks n, width c) of each stage
EXPANSION = 4                                            # a block's output has 4c channels


class BottleneckBlock(nn.Module):
  """``σ(BN₀(conv_1,1(σ(BN(conv_3,s(σ(BN(conv_1,1(h)))))))) + shortcut)`` with ``c = width``,
  ``s = stride`` and the projection shortcut ``BN(conv_1,s(h, 4c))`` where the shape changes."""

  width: int
  stride: int
  activation: str = "relu"

  @nn.compact
  def __call__(self, x: jax.Array, train: bool) -> jax.Array:
    act, features = resnet.activation_fn(self.activation), EXPANSION * self.width
    y = act(resnet.batch_norm(train, "bn1")(resnet.conv1x1(self.width, 1, "conv1")(x)))
    y = act(resnet.batch_norm(train, "bn2")(resnet.conv3x3(self.width, self.stride, "conv2")(y)))
    y = resnet.batch_norm(train, "bn3", zero_scale=True)(resnet.conv1x1(features, 1, "conv3")(y))
    if self.stride != 1 or x.shape[-1] != features:
      x = resnet.batch_norm(train, "projection_bn")(
          resnet.conv1x1(features, self.stride, "projection")(x))
    return act(y + x)


class ResNet50(nn.Module):
  """ResNet-50 (see the module docstring): ``num_classes`` output logits, ``activation`` a key of
  ``vision.ACTIVATIONS``."""

  num_classes: int = 1000
  activation: str = "relu"

  @nn.compact
  def __call__(self, x: jax.Array, train: bool) -> jax.Array:
    """Logits ``[B, num_classes]`` for images ``[B, H, W, C]``; ``train`` selects batch
    statistics (and updates the running ones, given ``mutable=["batch_stats"]``)."""
    resnet.check_input(x)
    stem = nn.Conv(64, (7, 7), strides=(2, 2), padding=((3, 3), (3, 3)), use_bias=False,
                   kernel_init=resnet.HE_NORMAL, name="stem_conv")
    h = resnet.activation_fn(self.activation)(resnet.batch_norm(train, "stem_bn")(stem(x)))
    h = nn.max_pool(h, (3, 3), strides=(2, 2), padding=((1, 1), (1, 1)))
    for stage, (blocks, width) in enumerate(STAGES):
      for block in range(blocks):
        stride = 2 if stage > 0 and block == 0 else 1
        h = BottleneckBlock(width, stride, self.activation, name=f"stage{stage}_block{block}")(
            h, train)
    return nn.Dense(self.num_classes, name="head")(resnet.global_average_pool(h))
