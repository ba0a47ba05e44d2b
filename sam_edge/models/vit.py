"""A Vision Transformer for small images (flax linen), after Dosovitskiy et al. (2021), "An Image is
Worth 16x16 Words", as Chen, Hsieh and Gong (2021), "When Vision Transformers Outperform ResNets
without Pretraining or Strong Data Augmentations", train it with SAM.

For NHWC images ``x`` ``[B, H, W, C]`` with ``p`` dividing ``H`` and ``W``, width ``d``, ``h``
heads (``h`` dividing ``d``), MLP width ``m`` and depth ``L``:

  z_0 = PatchEmbed(x) + E_pos       PatchEmbed: a p×p convolution with stride p and d features
                                    (a Dense layer on each flattened p×p×C patch) → N = HW/p²
                                    tokens [B, N, d]; E_pos [N, d] learned, N(0, 0.02²)
  z ← z + MHSA(LN(z))               L pre-LN encoder blocks: multi-head self-attention with h
  z ← z + MLP(LN(z))                heads of d/h, softmax(q kᵀ / sqrt(d/h)) v, and the MLP
                                    W₂ GELU(W₁ u + b₁) + b₂ of hidden width m
  logits = Dense(mean_n LN(z)_n)    final LayerNorm, global average pooling over the N tokens
                                    (no class token), a linear head

LN is LayerNorm over d with a learned scale and offset (`LayerNorm_*`, which SAM-ON perturbs);
the Dense, attention and patch kernels take flax's default initialisers (lecun_normal, zero
biases). The MLP's activation is always GELU, the paper's (``--activation`` does not apply).

Parameters (C channels, K classes, N = HW/p² patches):

  p²Cd + d (patches) + N d (positions) + L (4d² + 2dm + 9d + m) (blocks) + 2d + dK + K,

a block being 2 LayerNorms (4d), the q, k, v and output projections (4d² + 4d) and the MLP
(2dm + m + d). The defaults (p = 4, d = 192, h = 3, m = 768, L = 12: ViT-Ti's width, heads and
depth) on CIFAR-10 (32x32x3, N = 64) have 5,362,378 parameters.
"""

import flax.linen as nn
import jax
import jax.numpy as jnp


class EncoderBlock(nn.Module):
  """One pre-LN block: z + MHSA(LN(z)), then z + MLP(LN(z)) (module doc)."""

  heads: int
  mlp_width: int

  @nn.compact
  def __call__(self, z: jax.Array) -> jax.Array:
    """``[B, N, d]`` → ``[B, N, d]``."""
    y = nn.LayerNorm()(z)
    z = z + nn.MultiHeadDotProductAttention(num_heads=self.heads, deterministic=True)(y, y)
    y = nn.Dense(self.mlp_width)(nn.LayerNorm()(z))
    return z + nn.Dense(z.shape[-1])(nn.gelu(y))


class ViT(nn.Module):
  """The Vision Transformer of the module doc: ``patch_size`` p, ``depth`` L, ``width`` d,
  ``heads`` h, ``mlp_width`` m; ``num_classes`` logits. ``activation`` is accepted for the
  registry's uniform call and unused (the MLP is GELU)."""

  patch_size: int = 4
  depth: int = 12
  width: int = 192
  heads: int = 3
  mlp_width: int = 768
  num_classes: int = 10
  activation: str = "gelu"

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    """Logits ``[B, num_classes]`` for NHWC images ``[B, H, W, C]``."""
    p = self.patch_size
    if x.ndim != 4 or x.shape[1] % p or x.shape[2] % p:
      raise ValueError(f"ViT patch size {p} must divide the image sides, got {x.shape[1:3]}")
    if self.width % self.heads:
      raise ValueError(f"ViT width {self.width} is not a multiple of its {self.heads} heads")
    h = nn.Conv(self.width, (p, p), strides=(p, p), padding="VALID", name="patch_embedding")(x)
    z = h.reshape((h.shape[0], -1, self.width))
    z = z + self.param("position_embedding", nn.initializers.normal(0.02), z.shape[1:])
    for i in range(self.depth):
      z = EncoderBlock(self.heads, self.mlp_width, name=f"block{i}")(z)
    return nn.Dense(self.num_classes, name="head")(jnp.mean(nn.LayerNorm()(z), axis=1))
