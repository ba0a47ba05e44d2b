"""λ1 at every step (`curvature.tracking`) and the gradient of the sharpness
(`curvature.sharpness_gradient`, the self-stabilization kind), against dense matrices in float64."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from jax.flatten_util import ravel_pytree

from sam_edge.curvature import registry, sharpness_gradient, tracking
from sam_edge.curvature.kind import Inputs
from sam_edge.curvature.kinds.self_stabilization import SelfStabilizationSettings
from sam_edge.curvature.objective import Objective
from sam_edge.models.losses import sum_squared_error
from sam_edge.optim import update
from sam_edge.optim.oracle import Oracle
from sam_edge.optim.sam import SamSettings
from tests.helpers import dense_hessian

pytestmark = pytest.mark.usefixtures("x64")


def problem(seed=0, examples=16):
  """A 4-6-3 tanh MLP (51 parameters) on `examples` points, loss mean_b Σ_c (f − onehot)²."""
  rng = np.random.default_rng(seed)
  params = {"w1": jnp.asarray(rng.normal(size=(4, 6))), "b1": jnp.asarray(rng.normal(size=6) / 4),
            "w2": jnp.asarray(rng.normal(size=(6, 3)) / 2)}
  batch = {"x": jnp.asarray(rng.normal(size=(examples, 4))),
           "y": jnp.asarray(rng.integers(0, 3, examples))}
  forward = lambda p, b: jnp.tanh(b["x"] @ p["w1"] + p["b1"]) @ p["w2"]
  return Objective(forward, lambda f, b: sum_squared_error(f, b["y"])), params, batch


def top_eigenpair(objective, params, batch):
  values, vectors = np.linalg.eigh(dense_hessian(objective.loss, params, batch))
  return values[-1], vectors[:, -1], values


def tracked_steps(objective, params, batch, sam, hvps, eta, steps):
  """`steps` tracked steps of SAM on plain descent from `params`, the tracker refreshed by a
  step-0 measurement (the exact top eigenvector) as in a run: [(params, out)] of every step."""
  loss_fn = lambda p, b: (objective.loss(p, b), {})
  optimizer = optax.sgd(eta)
  oracle = Oracle(loss_fn, batch, sam.micro_batches)
  step = jax.jit(lambda s, t, k: tracking.tracked_update(oracle, optimizer, sam, s, t, hvps,
                                                         (k, k)))
  state = update.init_state(params, optimizer)
  _, v1, _ = top_eigenpair(objective, params, batch)
  tracker = tracking.refreshed(tracking.init_tracker(params),
                               ravel_pytree(params)[1](jnp.asarray(v1)))
  visited = []
  for t in range(steps):
    before = state.params
    state, tracker, out = step(state, tracker, jax.random.PRNGKey(t))
    visited.append((before, out))
  return visited


@pytest.mark.parametrize("hvps, early, settled, bound", [(3, 2e-2, 4, 1e-4), (1, 0.2, 12, 1e-3)])
def test_tracking_agrees_with_eigh_at_every_step(hvps, early, settled, bound):
  """Gradient descent near its edge (η = 1.9/λ1(w0)), the tracker refreshed by a step-0
  measurement as in a run. In the first steps the network moves fastest and the top eigenvector
  turns (λ1 falls from 5.8 to 4.8 in one step), so the warm start lags (by `early` relative):
  from step `settled` on, every step's tracked λ1 is the top eigenvalue of that step's Hessian to
  `bound` relative, with 3 HVPs per step (Lanczos and the free power step; measured ≤ 1.1e-4 from
  step 3) or 1 (the power method across steps; measured ≤ 3.2e-4 from step 11)."""
  objective, params, batch = problem()
  eta = 1.9 / top_eigenpair(objective, params, batch)[0]
  errors = []
  for visited, out in tracked_steps(objective, params, batch, SamSettings(), hvps, eta, 30):
    lam, _, _ = top_eigenpair(objective, visited, batch)
    errors.append(abs(float(out["lambda1_per_step"]) - lam) / lam)
  assert max(errors[1:]) < early and max(errors[settled:]) < bound, errors
  if hvps == 3:
    assert float(out["lambda1_per_step_residual"]) < 1e-2 * lam
  assert "gradient_curvature" not in out                            # ρ = 0: no SAM gradients


def test_tracking_is_refreshed_after_the_measured_step_not_before():
  """The tracked value at a measured step owes nothing to that measurement: a pending refresh
  becomes the start vector of the next step only."""
  objective, params, batch = problem(1)
  loss_fn = lambda p, b: (objective.loss(p, b), {})
  zero = tracking.init_tracker(params)
  v = jax.tree.map(jnp.ones_like, params)
  pending = tracking.refreshed(zero, v)
  key = jax.random.PRNGKey(0)
  first, hvp = tracking.linearize(Oracle(loss_fn, batch), params)
  grads = update.oracle_gradients(Oracle(loss_fn, batch, first=first), params, SamSettings())
  plain_tracker, plain = tracking.track(hvp, params, grads, zero, 2, key)
  next_tracker, out = tracking.track(hvp, params, grads, pending, 2, key)
  assert float(out["lambda1_per_step"]) == float(plain["lambda1_per_step"])
  np.testing.assert_array_equal(next_tracker["vector"], ravel_pytree(v)[0])
  assert not bool(next_tracker["pending"])
  assert not np.array_equal(plain_tracker["vector"], ravel_pytree(v)[0])


def test_gradient_curvature_is_the_curvature_along_the_ascent_direction():
  """On a quadratic L = ½ wᵀAw − bᵀw, εᵀ(∇L(w+ε) − ∇L(w))/||ε||² = ε̂ᵀAε̂ exactly, with ε̂ = ĝ
  for normalized SAM; on the MLP it approaches ĝᵀHĝ as ρ → 0."""
  rng = np.random.default_rng(0)
  m = rng.normal(size=(7, 7))
  a, b = jnp.asarray(m @ m.T), jnp.asarray(rng.normal(size=7))
  quadratic = lambda p, batch: (0.5 * p["w"] @ a @ p["w"] - b @ p["w"], {})
  params = {"w": jnp.asarray(rng.normal(size=7))}
  _, out = tracked_steps_of(quadratic, params, None, SamSettings(rho=0.3))
  g = a @ params["w"] - b
  g_hat = g / jnp.linalg.norm(g)
  assert float(out["gradient_curvature"]) == pytest.approx(float(g_hat @ a @ g_hat), rel=1e-12)

  objective, params, batch = problem(2)
  loss_fn = lambda p, bt: (objective.loss(p, bt), {})
  h = dense_hessian(objective.loss, params, batch)
  g = ravel_pytree(jax.grad(objective.loss)(params, batch))[0]
  g_hat = np.asarray(g / jnp.linalg.norm(g))
  _, out = tracked_steps_of(loss_fn, params, batch, SamSettings(rho=1e-4))
  assert float(out["gradient_curvature"]) == pytest.approx(g_hat @ h @ g_hat, rel=1e-3)


def tracked_steps_of(loss_fn, params, batch, sam):
  """One tracked SAM step on plain descent from `params`: (new state, out)."""
  optimizer = optax.sgd(0.1)
  state, _, out = tracking.tracked_update(Oracle(loss_fn, batch, sam.micro_batches), optimizer,
                                          sam, update.init_state(params, optimizer),
                                          tracking.init_tracker(params), 2,
                                          (jax.random.PRNGKey(0),) * 2)
  return state, out


def test_sharpness_gradient_matches_a_finite_difference_of_lambda1():
  """∇S at the top eigenvector u is the gradient of λ1: d/dt λ1(w + t d) at t = 0, by central
  differences of dense eigenvalues along a random direction d, equals ∇S · d."""
  objective, params, batch = problem(3)
  lam, u, values = top_eigenpair(objective, params, batch)
  assert values[-1] - values[-2] > 1e-2 * lam                  # a simple top eigenvalue
  flat, unravel = ravel_pytree(params)
  grad_s = ravel_pytree(sharpness_gradient.sharpness_gradient(
      objective.loss, params, batch, unravel(jnp.asarray(u))))[0]
  d = np.random.default_rng(0).normal(size=flat.shape[0])
  d /= np.linalg.norm(d)
  h = 1e-5
  shifted = [top_eigenpair(objective, unravel(flat + s * h * d), batch)[0] for s in (1, -1)]
  finite_difference = (shifted[0] - shifted[1]) / (2 * h)
  assert float(grad_s @ d) == pytest.approx(finite_difference, rel=1e-6, abs=1e-9)


def test_self_stabilization_kind_records_alpha_and_beta():
  """α = −∇L·∇S and β = ||∇S||² from the kind, against ∇S and ∇L computed here."""
  objective, params, batch = problem(4)
  _, u, _ = top_eigenpair(objective, params, batch)
  _, unravel = ravel_pytree(params)
  u = unravel(jnp.asarray(u))
  grad = jax.grad(objective.loss)(params, batch)
  requested = (("self_stabilization", SelfStabilizationSettings()),)
  record, _ = registry.measure_curvature(Inputs(objective, params, batch, u, grad), requested,
                                         jax.random.PRNGKey(0), registry.init_states(requested,
                                                                                    params))
  grad_s = sharpness_gradient.sharpness_gradient(objective.loss, params, batch, u)
  beta = float(optax.tree.vdot(grad_s, grad_s))
  assert float(record["self_stabilization"]) == pytest.approx(beta, rel=1e-12)
  assert float(record["sharpness_gradient_norm"]) == pytest.approx(beta ** 0.5, rel=1e-12)
  assert float(record["progressive_sharpening"]) == pytest.approx(
      -float(optax.tree.vdot(grad, grad_s)), rel=1e-12)
