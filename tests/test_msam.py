"""Momentum-SAM (`optim/variants/msam.py`): steps by hand on a quadratic, against the paper's own
loop (its code keeps the perturbed point as the parameters), and one gradient per step."""

import jax
import jax.numpy as jnp
import numpy as np
import optax

from sam_edge.optim import update
from sam_edge.optim.oracle import Oracle
from sam_edge.optim.sam import SamSettings

A = np.array([[2.0, 0.5, 0.0], [0.5, 1.0, -0.3], [0.0, -0.3, 0.7]])
W = np.array([0.4, -1.2, 2.0])
ETA, BETA, RHO = 0.1, 0.9, 0.3


def quadratic(params, batch):
  """L(w) = ½ wᵀ A w (the batch is unused); no model state."""
  return 0.5 * params["w"] @ jnp.asarray(A) @ params["w"], {}


def run(n, mu=BETA):
  """n jitted heavy-ball steps (β = BETA) of Momentum-SAM from W: the states after each."""
  optimizer = optax.sgd(ETA, momentum=BETA)
  sam = SamSettings(RHO, "msam", hyper={"msam_momentum": mu})
  state = update.init_state({"w": jnp.asarray(W)}, optimizer, sam=sam)
  step = jax.jit(lambda state: update.sam_update(quadratic, optimizer, sam, state, None))
  out = []
  for _ in range(n):
    state, _ = step(state)
    out.append(state)
  return out


def test_two_steps_by_hand(x64):
  """m_0 = 0: the first step is heavy ball's; then ε = −ρ m/‖m‖, d = A(w + ε), m ← μ m + d."""
  first, second = run(2, mu=0.5)
  d0 = A @ W
  w1 = W - ETA * d0
  np.testing.assert_allclose(first.params["w"], w1, rtol=1e-13)
  np.testing.assert_allclose(first.sam_state["m"]["w"], d0, rtol=1e-13)
  eps = -RHO * d0 / (np.linalg.norm(d0) + 1e-12)
  d1 = A @ (w1 + eps)
  np.testing.assert_allclose(second.params["w"], w1 - ETA * (BETA * d0 + d1), rtol=1e-13)
  np.testing.assert_allclose(second.sam_state["m"]["w"], 0.5 * d0 + d1, rtol=1e-13)


def test_equals_the_papers_loop_on_heavy_ball(x64):
  """The paper's MSAM (its optimizer/msam.py, weight decay 0) keeps p = w − ρ v/‖v‖ and takes
  the gradient at p; with μ = β our m is optax's heavy-ball buffer and our w its w."""
  p, buf, inverse = W.copy(), np.zeros(3), 0.0
  states = run(6)
  for state in states:
    g = A @ p
    p = p + RHO * inverse * buf
    buf = BETA * buf + g
    p = p - ETA * buf
    inverse = 1.0 / (np.linalg.norm(buf) + 1e-12)
    p = p - RHO * inverse * buf
    np.testing.assert_allclose(state.params["w"], p + RHO * inverse * buf, rtol=1e-12)
    np.testing.assert_allclose(state.sam_state["m"]["w"], buf, rtol=1e-12)
    np.testing.assert_allclose(state.opt_state[0].trace["w"], buf, rtol=1e-12)


def test_one_gradient_per_step_and_its_point():
  """One pass, at w + ε: its loss and gradient are the step's; with the oracle's `first` (a
  tracked step, a measurement) they are those at w, and ε and ∇L(w + ε) come back too."""
  calls = []

  def counting(params, batch):
    calls.append(1)          # runs at trace time: counts the passes in the program
    return quadratic(params, batch)

  params, state = {"w": jnp.asarray(W, jnp.float32)}, {"m": {"w": jnp.asarray(A @ W, jnp.float32)}}
  sam = SamSettings(RHO, "msam")
  grads = update.sam_gradients(counting, params, None, sam, state=state)
  assert len(calls) == 1
  shifted = W - RHO * (A @ W) / np.linalg.norm(A @ W)
  np.testing.assert_allclose(grads.direction["w"], A @ shifted, rtol=1e-5)
  np.testing.assert_allclose(grads.loss, 0.5 * shifted @ A @ shifted, rtol=1e-5)
  assert grads.eps is None
  oracle = Oracle(quadratic, None)
  with_first = update.oracle_gradients(
      Oracle(quadratic, None, first=oracle.value_and_grad(params)), params, sam, state=state)
  np.testing.assert_allclose(with_first.grad["w"], A @ W, rtol=1e-5)
  np.testing.assert_allclose(with_first.direction["w"], grads.direction["w"], rtol=1e-6)
  np.testing.assert_allclose(with_first.eps["w"], shifted - W, rtol=1e-5, atol=1e-6)
