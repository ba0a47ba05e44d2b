"""SAM and gradient-descent steps, checked by hand on a quadratic."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from sam_edge import steps

A = jnp.diag(jnp.array([3.0, 1.0]))


def quadratic(params, batch):
  """L(w) = ½ wᵀ A w (the batch is unused)."""
  w = params["w"]
  return 0.5 * w @ A @ w


def test_sam_step_on_a_quadratic_by_hand():
  w = np.array([1.0, 2.0])
  eta, rho = 0.1, 0.5
  g = np.array([3.0, 2.0])                                  # A w
  w_adv = w + rho * g / (np.linalg.norm(g) + 1e-5)
  expected = w - eta * (np.diag([3.0, 1.0]) @ w_adv)
  state = steps.init_state({"w": jnp.array(w)}, optax.sgd(eta))
  new_state, loss = steps.make_update_step(quadratic, optax.sgd(eta), rho)(state, None)
  np.testing.assert_allclose(new_state.params["w"], expected, rtol=1e-6)
  assert float(loss) == pytest.approx(0.5 * (3 * 1 + 4), rel=1e-6)   # loss before the step
  assert int(new_state.step) == 1


def test_rho_zero_is_gradient_descent_exactly():
  params = {"w": jnp.array([0.3, -1.7])}
  optimizer = optax.sgd(0.2)
  expected = params["w"] - 0.2 * (A @ params["w"])
  state = steps.init_state(params, optimizer)   # donated to the step: not used afterwards
  new_state, _ = steps.make_update_step(quadratic, optimizer, 0.0)(state, None)
  assert np.array_equal(np.asarray(new_state.params["w"]), np.asarray(expected))


def test_rho_zero_evaluates_one_gradient():
  calls = []

  def counting_loss(params, batch):
    calls.append(1)            # runs at trace time: counts gradient evaluations in the program
    return quadratic(params, batch)

  steps.sam_gradients(counting_loss, {"w": jnp.ones(2)}, None, 0.0)
  assert len(calls) == 1
  calls.clear()
  steps.sam_gradients(counting_loss, {"w": jnp.ones(2)}, None, 0.1)
  assert len(calls) == 2


def test_zero_gradient_never_gives_nan():
  grads = steps.sam_gradients(quadratic, {"w": jnp.zeros(2)}, None, 0.5)
  assert np.all(np.isfinite(grads.sam_grad["w"])) and np.all(grads.sam_grad["w"] == 0)


def test_sam_gradient_is_available_on_its_own():
  w = jnp.array([1.0, 2.0])
  grads = jax.jit(lambda p: steps.sam_gradients(quadratic, p, None, 0.5))({"w": w})
  g = A @ w
  np.testing.assert_allclose(grads.grad["w"], g, rtol=1e-6)
  np.testing.assert_allclose(grads.sam_grad["w"], A @ (w + 0.5 * g / (jnp.linalg.norm(g) + 1e-5)),
                             rtol=1e-6)
