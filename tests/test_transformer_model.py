"""Tests for sam_edge.models.transformer: shapes, size, masking, loss."""
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from sam_edge.models import transformer

DEFAULTS = dict(num_layers=6, num_heads=8, key_size=32, model_size=128,
                sequence_length=64, vocab_size=128)
TINY = dict(num_layers=1, num_heads=2, key_size=16, model_size=32,
            sequence_length=16, vocab_size=128)


def _tokens(batch: int, length: int, seed: int = 0) -> np.ndarray:
  rng = np.random.default_rng(seed)
  return rng.integers(1, 128, size=(batch, length), dtype=np.int32)


def test_parameter_count_defaults():
  model = transformer.make_language_model(**DEFAULTS)
  tokens = jnp.zeros((1, 64), jnp.int32)
  shapes = jax.eval_shape(model.init, jax.random.key(0), tokens)
  count = sum(int(np.prod(x.shape)) for x in jax.tree.leaves(shapes))
  assert count == 1_626_496


def test_output_shape_and_dtype():
  model = transformer.make_language_model(**TINY)
  tokens = _tokens(3, 16)
  params = jax.eval_shape(model.init, jax.random.key(0), tokens)
  logits = jax.eval_shape(model.apply, params, tokens)
  assert logits.shape == (3, 16, 128)
  assert logits.dtype == jnp.float32
  # Shorter sequences than sequence_length also work.
  assert jax.eval_shape(model.apply, params, tokens[:, :5]).shape == (3, 5, 128)


@pytest.mark.slow
def test_causal():
  model = transformer.make_language_model(**TINY)
  tokens = _tokens(2, 16)
  params = model.init(jax.random.key(1), tokens)
  apply = jax.jit(model.apply)
  logits = apply(params, tokens)
  t = 9
  changed = tokens.copy()
  changed[:, t] = (changed[:, t] % 127) + 1  # another non-padding token
  assert not np.array_equal(changed, tokens)
  new_logits = apply(params, changed)
  np.testing.assert_allclose(new_logits[:, :t], logits[:, :t], atol=1e-6)
  assert not np.allclose(new_logits[:, t:], logits[:, t:], atol=1e-4)


def test_causal_with_padding():
  # Padding at the start: the padded queries see only themselves, so a later
  # change still does not reach them.
  model = transformer.make_language_model(**TINY)
  tokens = _tokens(1, 16)
  tokens[:, :4] = 0
  params = model.init(jax.random.key(2), tokens)
  apply = jax.jit(model.apply)
  logits = apply(params, tokens)
  changed = tokens.copy()
  changed[:, 6] = (changed[:, 6] % 127) + 1
  new_logits = apply(params, changed)
  np.testing.assert_allclose(new_logits[:, :6], logits[:, :6], atol=1e-6)
  assert np.all(np.isfinite(np.asarray(logits)))


def test_padding_keys_ignored():
  # Perturbing what sits at padded positions (here their positional
  # embeddings) must not change the logits of non-padding queries.
  model = transformer.make_language_model(**TINY)
  tokens = _tokens(1, 16)
  tokens[:, 2:5] = 0
  params = model.init(jax.random.key(3), tokens)
  apply = jax.jit(model.apply)
  logits = apply(params, tokens)
  perturbed = dict(params)
  pos = params["transformer"]["positional_embeddings"]  # [T, D]
  noise = jax.random.normal(jax.random.key(4), pos[2:5].shape)  # [3, D]
  perturbed["transformer"] = {"positional_embeddings": pos.at[2:5].add(noise)}
  new_logits = apply(perturbed, tokens)
  np.testing.assert_allclose(new_logits[:, :2], logits[:, :2], atol=1e-6)
  np.testing.assert_allclose(new_logits[:, 5:], logits[:, 5:], atol=1e-5)
  # Sanity: the padded queries themselves did see the change.
  assert not np.allclose(new_logits[:, 2:5], logits[:, 2:5], atol=1e-4)


def test_loss_ignores_padding_targets():
  rng = np.random.default_rng(0)
  logits = jnp.asarray(rng.normal(size=(2, 5, 128)), jnp.float32)
  targets = jnp.asarray([[3, 4, 0, 0, 7], [0, 1, 2, 0, 0]], jnp.int32)
  loss = transformer.next_token_loss(logits, targets)
  ce = optax.softmax_cross_entropy_with_integer_labels(logits, targets)
  keep = np.asarray(targets) != 0
  np.testing.assert_allclose(loss, np.asarray(ce)[keep].mean(), rtol=1e-6)
  # Changing logits at padded targets does not change the loss.
  other = logits.at[0, 2].add(5.0).at[1, 0].add(-3.0)
  np.testing.assert_allclose(transformer.next_token_loss(other, targets),
                             loss, rtol=1e-6)
  # All padding: zero, not NaN.
  assert float(transformer.next_token_loss(logits, jnp.zeros_like(targets))
               ) == 0.0


def test_split_window():
  windows = np.arange(1, 13, dtype=np.uint8).reshape(2, 6)
  inputs, targets = transformer.split_window(windows)
  assert inputs.dtype == jnp.int32 and targets.dtype == jnp.int32
  assert inputs.shape == targets.shape == (2, 5)
  np.testing.assert_array_equal(inputs, windows[:, :-1])
  np.testing.assert_array_equal(targets, windows[:, 1:])


@pytest.mark.slow
def test_tiny_model_overfits():
  model = transformer.make_language_model(**TINY)
  rng = np.random.default_rng(0)
  windows = rng.integers(97, 123, size=(4, 17), dtype=np.uint8)
  inputs, targets = transformer.split_window(windows)
  params = model.init(jax.random.key(0), inputs)
  optimizer = optax.sgd(0.5)
  opt_state = optimizer.init(params)

  def loss_fn(params):
    return transformer.next_token_loss(model.apply(params, inputs), targets)

  @jax.jit
  def step(params, opt_state):
    loss, grads = jax.value_and_grad(loss_fn)(params)
    updates, opt_state = optimizer.update(grads, opt_state)
    return optax.apply_updates(params, updates), opt_state, loss

  losses = []
  for _ in range(30):
    params, opt_state, loss = step(params, opt_state)
    losses.append(float(loss))
  assert np.all(np.isfinite(losses))
  assert losses[-1] < losses[0] - 0.5, losses
