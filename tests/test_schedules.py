"""Tests for sam_edge.schedules: step sizes at chosen steps against hand-computed values."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from sam_edge.optim import schedules

ETA = 0.1


def values(schedule, steps) -> np.ndarray:
  """η(s) for each s, evaluated on a traced int32 step inside jit (as the training step does)."""
  at = jax.jit(jax.vmap(schedule))
  return np.asarray(at(jnp.asarray(steps, jnp.int32)))


def test_constant_is_base_lr_bitwise():
  schedule = schedules.make_schedule("constant", ETA)
  steps = [0, 1, 7, 1000, 2**31 - 1]
  expected = np.full(len(steps), np.float32(ETA))
  np.testing.assert_array_equal(values(schedule, steps), expected)
  assert schedule(5) == ETA                       # untraced too


def test_constant_schedule_sgd_equals_plain_sgd_bitwise():
  grads = {"w": jax.random.normal(jax.random.key(0), (17,)), "b": jnp.float32(0.3)}
  params = jax.tree.map(jnp.zeros_like, grads)
  plain, scheduled = optax.sgd(ETA), optax.sgd(schedules.make_schedule("constant", ETA))
  plain_state, scheduled_state = plain.init(params), scheduled.init(params)
  update_plain, update_scheduled = jax.jit(plain.update), jax.jit(scheduled.update)
  for _ in range(3):
    a, plain_state = update_plain(grads, plain_state)
    b, scheduled_state = update_scheduled(grads, scheduled_state)
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
      np.testing.assert_array_equal(x, y)


def test_constant_with_warmup():
  # η(s) = η (s + 1) / 4 for s < 4, then η.
  schedule = schedules.make_schedule("constant", ETA, warmup_steps=4)
  steps = [0, 1, 2, 3, 4, 5, 100]
  expected = [ETA / 4, 2 * ETA / 4, 3 * ETA / 4, ETA, ETA, ETA, ETA]
  got = values(schedule, steps)
  np.testing.assert_allclose(got, expected, rtol=1e-6)
  np.testing.assert_array_equal(got[3:], np.float32(ETA))     # exactly η after the warm-up


def test_warmup_of_one_step_is_no_warmup():
  np.testing.assert_array_equal(
      values(schedules.make_schedule("constant", ETA, warmup_steps=1), [0, 1, 9]),
      np.float32(ETA))


def test_cosine():
  # η ½ (1 + cos(π s / 100)), 0 from step 100 on.
  schedule = schedules.make_schedule("cosine", ETA, total_steps=100)
  steps = [0, 25, 50, 75, 99, 100, 150]
  expected = [ETA, ETA * (2 + math.sqrt(2)) / 4, ETA / 2, ETA * (2 - math.sqrt(2)) / 4,
              ETA * (1 + math.cos(math.pi * 0.99)) / 2, 0.0, 0.0]
  # optax's 1 + cos(·) cancels near step T: float32 absolute error ~ η · 2⁻²⁴.
  np.testing.assert_allclose(values(schedule, steps), expected, rtol=1e-5, atol=ETA * 2**-24)


def test_cosine_with_warmup():
  # Warm-up η (s + 1)/10 for s < 10, then η ½ (1 + cos(π (s − 10) / 90)).
  schedule = schedules.make_schedule("cosine", ETA, warmup_steps=10, total_steps=100)
  steps = [0, 4, 9, 10, 55, 70, 100, 120]
  expected = [ETA / 10, ETA / 2, ETA, ETA, ETA / 2, ETA * (1 + math.cos(math.pi * 60 / 90)) / 2,
              0.0, 0.0]
  np.testing.assert_allclose(values(schedule, steps), expected, rtol=1e-5, atol=ETA * 2**-24)
  assert values(schedule, [10])[0] == np.float32(ETA)


def test_step():
  # Boundaries 0.5 and 0.75 of 100 steps: η until 49, η/10 from 50, η/100 from 75.
  schedule = schedules.make_schedule("step", ETA, total_steps=100)
  steps = [0, 49, 50, 74, 75, 99, 500]
  expected = [ETA, ETA, ETA / 10, ETA / 10, ETA / 100, ETA / 100, ETA / 100]
  np.testing.assert_allclose(values(schedule, steps), expected, rtol=1e-6)


def test_step_with_warmup_and_custom_boundaries():
  # W = 5, T = 30, boundaries 0.1 (step 3, inside the warm-up: applies from step 5) and
  # 0.5 (step 15), factor 0.5.
  schedule = schedules.make_schedule("step", ETA, warmup_steps=5, total_steps=30,
                                     boundaries=(0.1, 0.5), factor=0.5)
  steps = [0, 3, 4, 5, 14, 15, 29]
  expected = [ETA / 5, 4 * ETA / 5, ETA, ETA / 2, ETA / 2, ETA / 4, ETA / 4]
  np.testing.assert_allclose(values(schedule, steps), expected, rtol=1e-6)


def test_step_boundaries_round_to_nearest_step_and_may_coincide():
  # 0.29 · 100 = 28.999999999999996 rounds to step 29; two boundaries on step 29 give factor².
  schedule = schedules.make_schedule("step", 1.0, total_steps=100, boundaries=(0.29, 0.29),
                                     factor=0.5)
  np.testing.assert_allclose(values(schedule, [28, 29, 99]), [1.0, 0.25, 0.25], rtol=1e-7)


@pytest.mark.parametrize("kind", ["cosine", "step"])
def test_total_steps_required(kind):
  with pytest.raises(ValueError, match="total_steps"):
    schedules.make_schedule(kind, ETA)


@pytest.mark.parametrize("kind, kwargs, match", [
    ("linear", {}, "linear"),
    ("constant", {"warmup_steps": -1}, "warmup_steps"),
    ("cosine", {"total_steps": 10, "warmup_steps": 10}, "warmup_steps"),
    ("step", {"total_steps": 0}, "total_steps"),
    ("step", {"total_steps": 10, "boundaries": (1.5,)}, "1.5"),
    ("step", {"total_steps": 10, "factor": 0.0}, "factor"),
])
def test_bad_arguments(kind, kwargs, match):
  with pytest.raises(ValueError, match=match):
    schedules.make_schedule(kind, ETA, **kwargs)


def test_base_lr_must_be_positive():
  with pytest.raises(ValueError, match="positive"):
    schedules.make_schedule("constant", 0.0)
