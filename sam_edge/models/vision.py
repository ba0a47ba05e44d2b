"""Flax (linen) vision models: a fully connected MLP and a small CNN.

Both take a batch of images ``x`` of shape ``[B, H, W, C]`` (float32, already
preprocessed) and return logits of shape ``[B, num_classes]``.

MLP with ``depth = L`` Dense layers (``L - 1`` hidden layers of ``width``):

  h_0 = flatten(x),
  h_l = σ(W_l h_{l-1} + b_l)             for l = 1, ..., L - 1,
  logits = W_L h_{L-1} + b_L,

with ``W_l ~ glorot_normal``, ``b_l = 0`` and the activation σ one of ``ACTIVATIONS``
(relu by default, as the reference). Its parameter count for ``d``
inputs, ``k`` classes and ``L >= 2`` is

  (d + 1) w + (L - 2)(w + 1) w + (w + 1) k,

e.g. 99,710 for MNIST (d = 784) with L = 4, w = 100.

CNN with ``num_blocks = K`` blocks of ``layers_per_block`` convolutions; block
``i`` (0-based) uses ``c_i = 2**i * feature_multiplier`` channels:

  h <- layer_norm(σ(conv3x3_SAME(h, c_i)))       (layers_per_block times)
  h <- max_pool_2x2_stride2_VALID(h)             (once per block)

then ``logits = Dense(flatten(h))``. LayerNorm normalises over the channel axis
(flax default) with a learned scale and bias; convolutions and the final Dense
use flax's default initialisers (lecun_normal kernels, zero biases).
"""

from typing import Callable

import flax.linen as nn
import jax

ACTIVATIONS: dict[str, Callable[[jax.Array], jax.Array]] = {
    "relu": nn.relu, "tanh": nn.tanh, "elu": nn.elu, "gelu": nn.gelu, "softplus": nn.softplus}


def flatten(x: jax.Array) -> jax.Array:
  """Reshapes ``[B, ...]`` to ``[B, prod(...)]``."""
  return x.reshape((x.shape[0], -1))


def _glorot_dense(features: int) -> nn.Dense:
  """Dense layer with ``glorot_normal`` kernel and zero bias."""
  return nn.Dense(
      features,
      kernel_init=nn.initializers.glorot_normal(),
      bias_init=nn.initializers.zeros,
  )


class MLP(nn.Module):
  """Fully connected network with ``depth`` Dense layers in total.

  ``depth`` (>= 1) counts the output layer; each of the ``depth - 1`` hidden layers has ``width``
  units. ``num_classes`` is the number of output logits and ``activation`` a key of
  ``ACTIVATIONS``.
  """

  depth: int
  width: int
  num_classes: int = 10
  activation: str = "relu"

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    """Returns logits ``[B, num_classes]`` for inputs ``[B, ...]``."""
    if self.depth < 1:
      raise ValueError(f"MLP depth must be >= 1, got {self.depth}")
    h = flatten(x)
    for _ in range(self.depth - 1):
      h = ACTIVATIONS[self.activation](_glorot_dense(self.width)(h))
    return _glorot_dense(self.num_classes)(h)


class CNN(nn.Module):
  """Blocks of 3x3 conv -> activation -> LayerNorm, 2x2 max-pool after each block.

  There are ``num_blocks`` = ``K`` blocks, so the spatial size shrinks by ``2**K`` (floor division
  at every pool), each of ``layers_per_block`` convolutions. Block ``i`` has
  ``2**i * feature_multiplier`` channels (block 0: ``feature_multiplier``). ``num_classes`` is
  the number of output logits and ``activation`` a key of ``ACTIVATIONS``.
  """

  num_blocks: int
  layers_per_block: int
  feature_multiplier: int
  num_classes: int = 10
  activation: str = "relu"

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    """Returns logits ``[B, num_classes]`` for NHWC inputs ``[B, H, W, C]``."""
    h = x
    for i in range(self.num_blocks):
      channels = 2**i * self.feature_multiplier
      for _ in range(self.layers_per_block):
        h = nn.Conv(channels, kernel_size=(3, 3), padding="SAME")(h)
        h = nn.LayerNorm()(ACTIVATIONS[self.activation](h))
      h = nn.max_pool(h, window_shape=(2, 2), strides=(2, 2), padding="VALID")
    return nn.Dense(self.num_classes)(flatten(h))

