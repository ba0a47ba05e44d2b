"""A character-level, decoder-only transformer language model in Haiku.

For tokens x[b, t] in 0..V-1 (0 is padding):

  h_0 = E[x] + P[t]                                   # [B, T, D]
  for each of the L blocks (pre-LayerNorm):
    h = h + MHA(LN(h), mask)                          # causal + padding mask
    h = h + W_2 GELU(W_1 LN(h) + b_1) + b_2           # W_1: D -> F*D
  logits = LN(h) W_out + b_out                        # [B, T, V]

where MHA attends from query t to key s iff s <= t and (x[s] != 0 or s = t)
(a query always sees itself, so a row is never fully masked and nothing leaks
from the future).

The loss is the mean next-token cross-entropy over non-padding targets,

  loss = sum_{b,t} m[b,t] CE(logits[b,t], y[b,t]) / max(sum_{b,t} m[b,t], 1),

with m[b,t] = [y[b,t] != 0].
"""

import haiku as hk
import jax
import jax.numpy as jnp
import numpy as np
import optax

from sam_edge.models import losses

PAD = 0


class Transformer(hk.Module):
  """Decoder-only transformer: tokens int [B, T] -> logits float [B, T, V]."""

  def __init__(self, num_layers: int = 6, num_heads: int = 8,
               key_size: int = 32, model_size: int = 128,
               sequence_length: int = 64, vocab_size: int = 128,
               widening_factor: int = 4, name: str | None = None):
    """Builds the module, named `name`.

    It has `num_layers` transformer blocks of `num_heads` attention heads each, `key_size` the
    size of each head's queries, keys and values. `model_size` is D, the width of the residual
    stream; `sequence_length` the longest T (size of the positional embedding); `vocab_size` V,
    the number of token ids; and `widening_factor` F, the MLP hidden width being F * D.
    """
    super().__init__(name=name)
    self.num_layers = num_layers
    self.num_heads = num_heads
    self.key_size = key_size
    self.model_size = model_size
    self.sequence_length = sequence_length
    self.vocab_size = vocab_size
    self.widening_factor = widening_factor

  def __call__(self, tokens: jax.Array) -> jax.Array:
    """Next-token logits float [B, T, vocab_size] of `tokens` int [B, T] (T <= sequence_length,
    0 for padding)."""
    _, seq_len = tokens.shape
    if seq_len > self.sequence_length:
      raise ValueError(f"got {seq_len} tokens per sequence but "
                       f"sequence_length is {self.sequence_length}")
    init = hk.initializers.TruncatedNormal(stddev=0.02)
    # Residual-branch output layers scaled down with depth (GPT-2 style).
    w_init = hk.initializers.VarianceScaling(2.0 / self.num_layers)

    token_embed = hk.Embed(self.vocab_size, self.model_size, w_init=init,
                           name="token_embed")
    positions = hk.get_parameter(
        "positional_embeddings", [self.sequence_length, self.model_size],
        init=init)  # [T_max, D]
    h = token_embed(tokens) + positions[None, :seq_len]  # [B, T, D]

    causal = np.tril(np.ones((seq_len, seq_len), dtype=bool))  # [T, T]
    key_is_token = tokens != PAD  # [B, T]
    diagonal = np.eye(seq_len, dtype=bool)  # [T, T]
    mask = causal[None] & (key_is_token[:, None, :] | diagonal[None])
    mask = mask[:, None]  # [B, 1, T, T]

    for _ in range(self.num_layers):
      attn_in = _layer_norm(h)  # [B, T, D]
      h = h + hk.MultiHeadAttention(
          num_heads=self.num_heads, key_size=self.key_size,
          model_size=self.model_size, w_init=w_init)(
              attn_in, attn_in, attn_in, mask=mask)  # [B, T, D]
      mlp_in = _layer_norm(h)  # [B, T, D]
      hidden = hk.Linear(self.widening_factor * self.model_size,
                         w_init=w_init)(mlp_in)  # [B, T, F*D]
      hidden = jax.nn.gelu(hidden)
      h = h + hk.Linear(self.model_size, w_init=w_init)(hidden)  # [B, T, D]

    h = _layer_norm(h)  # [B, T, D]
    return hk.Linear(self.vocab_size, name="output")(h)  # [B, T, V]


def _layer_norm(x: jax.Array) -> jax.Array:
  """LayerNorm over the last axis with a learned scale and offset."""
  return hk.LayerNorm(axis=-1, create_scale=True, create_offset=True)(x)


def make_language_model(**config) -> hk.Transformed:
  """A pure Transformer: init(rng, tokens) -> params, apply(params, tokens).

  `config` holds the Transformer constructor arguments (num_layers, num_heads, ...). Returns an
  hk.Transformed without an rng in apply: apply(params, tokens [B, T]) -> logits [B, T, V].
  """

  def forward(tokens: jax.Array) -> jax.Array:
    return Transformer(**config)(tokens)

  return hk.without_apply_rng(hk.transform(forward))


def next_token_loss(logits: jax.Array, targets: jax.Array) -> jax.Array:
  """Mean cross-entropy over non-padding targets: a float scalar.

  loss = sum(m * ce) / max(sum(m), 1) with m = [targets != 0] and
  ce[b, t] = -log softmax(logits[b, t])[targets[b, t]], for `logits` float [B, T, V] and
  `targets` int [B, T].
  """
  ce = optax.softmax_cross_entropy_with_integer_labels(
      logits.astype(jnp.float32), targets)  # [B, T]
  mask = (targets != PAD).astype(jnp.float32)  # [B, T]
  return jnp.sum(mask * ce) / jnp.maximum(jnp.sum(mask), 1.0)


def split_window(windows: jax.Array) -> tuple[jax.Array, jax.Array]:
  """Splits windows of T + 1 characters into inputs and next characters.

  inputs = windows[:, :-1], targets = windows[:, 1:]. For `windows` uint8 [B, T + 1], returns
  `(inputs int32 [B, T], targets int32 [B, T])`.
  """
  windows = jnp.asarray(windows).astype(jnp.int32)  # [B, T+1]
  return windows[:, :-1], windows[:, 1:]


def per_sequence_loss(logits: jax.Array, targets: jax.Array) -> jax.Array:
  """Each sequence's mean cross-entropy over its non-padding targets: float [B].

  loss_b = Σ_t m[b,t] ce[b,t] / max(Σ_t m[b,t], 1), with m and ce as in `next_token_loss`.
  """
  ce = optax.softmax_cross_entropy_with_integer_labels(
      logits.astype(jnp.float32), targets)  # [B, T]
  mask = (targets != PAD).astype(jnp.float32)  # [B, T]
  return jnp.sum(mask * ce, axis=-1) / jnp.maximum(jnp.sum(mask, axis=-1), 1.0)


def per_sequence_error(logits: jax.Array, targets: jax.Array) -> jax.Array:
  """Each sequence's fraction of non-padding targets whose arg-max logit is wrong: float [B].

  err_b = Σ_t m[b,t] [argmax logits[b,t] ≠ y[b,t]] / max(Σ_t m[b,t], 1).
  """
  wrong = losses.misclassified(logits, targets)                            # [B, T]
  mask = (targets != PAD).astype(jnp.float32)                              # [B, T]
  return jnp.sum(mask * wrong, axis=-1) / jnp.maximum(jnp.sum(mask, axis=-1), 1.0)
