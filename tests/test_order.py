"""The orders of training examples (`data.order`): the shuffle buffer replayed exactly, pure
functions of (seed, step), the reference's kept windows and test batches."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from sam_edge.data import order


def naive_buffer(n, m, seed, count):
  """The shuffle buffer, simulated draw by draw: slots from the same generator as the order."""
  slots = np.random.default_rng(seed).integers(0, m, size=count, dtype=np.int64)
  buffer, nxt, out = list(range(m)), m, []
  for r in slots:
    out.append(buffer[r])
    buffer[r], nxt = nxt, nxt + 1
  return np.array(out) % n


@pytest.mark.parametrize("n, m, count", [(50, 7, 300), (1000, 80, 5000), (13, 40, 999)])
def test_buffer_draws_are_the_simulated_buffer(n, m, count, monkeypatch):
  monkeypatch.setattr(order, "CHUNK", 64)                  # several chunks, carried state
  expected = naive_buffer(n, m, (3, 1), count)
  np.testing.assert_array_equal(order.buffer_draws(n, m, (3, 1), count), expected)
  np.testing.assert_array_equal(order.buffer_draws(n, m, (3, 1), 17, start=200 % count),
                                expected[200 % count:200 % count + 17])


def test_buffered_order_steps_replay_and_resume(monkeypatch):
  monkeypatch.setattr(order, "CHUNK", 64)
  n, b, m = 40, 4, 40
  expected = naive_buffer(n, m, (0, 1), 400).reshape(-1, b)
  run = order.BufferedOrder(n, b, (0, 1))
  for step in range(60):
    np.testing.assert_array_equal(run.host_indices(step), expected[step])
    np.testing.assert_array_equal(run.host_indices(step), expected[step])   # asked twice
  np.testing.assert_array_equal(run.host_indices(7), expected[7])           # back: replayed
  resumed = order.BufferedOrder(n, b, (0, 1))
  np.testing.assert_array_equal(resumed.host_indices(33), expected[33])     # a resume
  other = order.BufferedOrder(n, b, (1, 1))
  assert not np.array_equal(other.host_indices(33), expected[33])           # the seed decides


def test_early_batches_come_from_the_start_of_the_corpus():
  run = order.BufferedOrder(10_000, 16, (0, 1))               # buffer of 160 windows
  first = np.concatenate([run.host_indices(s) for s in range(5)])
  assert first.max() < 160 + 80 and np.mean(first) < 160
  uniform = np.random.default_rng(0).integers(0, 10_000, size=80)
  assert np.mean(uniform) > 1000                              # unlike uniform batches


def test_stream_order_is_stored_order_repeated():
  stream = order.StreamOrder(10, 4)
  got = jax.jit(lambda s: stream.device_indices(None, s))
  np.testing.assert_array_equal(got(jnp.int32(0)), [0, 1, 2, 3])
  np.testing.assert_array_equal(got(jnp.int32(2)), [8, 9, 0, 1])
  assert order.StreamOrder(10, 10).device_indices(None, jnp.int32(3)) is None   # full batch


def test_reference_test_batches():
  assert order.whole_batches(1716, 128) == 1664
  batches = order.reference_test_batches(1716, 111_540, 128, 64, (0, 2))
  assert batches.shape == (13, 128)                           # ⌊111540 / (128·64)⌋ = 13
  assert batches.max() < 1664                                 # only whole batches' windows
  np.testing.assert_array_equal(batches, order.reference_test_batches(1716, 111_540, 128, 64,
                                                                      (0, 2)))


def test_shuffled_indices_drawn_once_per_epoch_are_those_drawn_in_the_step():
  """The host's slices of the epoch's permutation equal the in-step draw, across epochs, for
  steps asked out of order (a resume) and for another key."""
  shuffled = order.ShuffledOrder(10, 3)                        # 3 steps an epoch, 1 row left out
  in_step = jax.jit(shuffled.device_indices)
  for key in (jax.random.key(0), jax.random.key(1), jax.random.PRNGKey(2)):
    for step in (0, 1, 2, 3, 7, 4, 0, 11):
      np.testing.assert_array_equal(shuffled.host_indices(step, key),
                                    in_step(key, jnp.int32(step)))
  assert order.ShuffledOrder(10, 10).host_indices(5, jax.random.key(0)) is None  # full batch
