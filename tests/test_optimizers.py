"""Base optimizers (optax), L2 weight decay, schedules, Adam's preconditioner and the
preconditioned Hessian operator."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from jax.flatten_util import ravel_pytree

from sam_edge.curvature import hvp
from sam_edge.optim import adam as adam_lib
from sam_edge.optim import schedules
from sam_edge.optim.optimizers import OPTIMIZERS, OptimizerSettings
from tests.helpers import make_optimizer


def loss(params, x):
  """A small non-quadratic loss: mean of tanh(x W + b)² − mean(b)."""
  h = jnp.tanh(x @ params["W"] + params["b"])
  return jnp.mean(h ** 2) - 0.3 * jnp.mean(params["b"])


def problem(dtype=jnp.float32):
  k1, k2, k3 = jax.random.split(jax.random.PRNGKey(0), 3)
  params = {"W": jax.random.normal(k1, (3, 4), dtype), "b": jax.random.normal(k2, (4,), dtype)}
  x = jax.random.normal(k3, (5, 3), dtype)
  return params, x


def run(optimizer, params, x, num_steps):
  """`num_steps` jitted steps of `optimizer` on `loss`: the list of parameter pytrees."""
  @jax.jit
  def step(params, opt_state):
    grad = jax.grad(loss)(params, x)
    updates, opt_state = optimizer.update(grad, opt_state, params)
    return optax.apply_updates(params, updates), opt_state
  opt_state, out = optimizer.init(params), []
  for _ in range(num_steps):
    params, opt_state = step(params, opt_state)
    out.append(params)
  return out


def bits(tree):
  """The raw bits of every leaf (so −0.0 ≠ 0.0 and NaN payloads count)."""
  return [np.asarray(leaf).view(np.uint32) for leaf in jax.tree.leaves(tree)]


def assert_bitwise(a, b):
  for x, y in zip(bits(a), bits(b), strict=True):
    np.testing.assert_array_equal(x, y)


def test_sgd_is_exactly_optax_sgd():
  params, x = problem()
  ours = make_optimizer("sgd", 0.1)
  assert jax.tree.structure(ours.init(params)) == jax.tree.structure(optax.sgd(0.1).init(params))
  for a, b in zip(run(ours, params, x, 5), run(optax.sgd(0.1), params, x, 5), strict=True):
    assert_bitwise(a, b)


@pytest.mark.parametrize("name", ["momentum", "nesterov"])
def test_momentum_zero_is_bitwise_sgd_over_several_steps(name):
  params, x = problem()
  sgd = run(make_optimizer("sgd", 0.1), params, x, 6)
  ours = run(make_optimizer(name, 0.1, momentum=0.0), params, x, 6)
  for a, b in zip(ours, sgd, strict=True):
    assert_bitwise(a, b)
  assert not np.array_equal(np.asarray(sgd[-1]["b"]), np.asarray(params["b"]))   # it moved


@pytest.mark.parametrize("name", ["momentum", "nesterov"])
@pytest.mark.parametrize("beta", [-0.5, 0.9])
def test_momentum_follows_its_recurrence_negative_beta_included(x64, name, beta):
  """m ← g + β m;  heavy ball w ← w − η m,  Nesterov w ← w − η (g + β m); by hand in numpy."""
  params, x = problem(jnp.float64)
  eta = 0.05
  got = run(make_optimizer(name, eta, momentum=beta), params, x, 4)
  w = {k: np.asarray(v) for k, v in params.items()}
  m = {k: np.zeros_like(v) for k, v in w.items()}
  for params_t in got:
    g = {k: np.asarray(v) for k, v in jax.grad(loss)(w, x).items()}
    m = {k: g[k] + beta * m[k] for k in w}
    step = m if name == "momentum" else {k: g[k] + beta * m[k] for k in w}
    w = {k: w[k] - eta * step[k] for k in w}
    for k in w:
      np.testing.assert_allclose(params_t[k], w[k], rtol=1e-12, atol=1e-14)


def test_weight_decay_is_l2_before_the_base_optimizer(x64):
  """sgd: w ← w − η (g + wd·w). adam: Adam of d = g + wd·w, so not AdamW's decoupled decay."""
  params, x = problem(jnp.float64)
  eta, wd = 0.1, 0.05
  (got,) = run(make_optimizer("sgd", eta, weight_decay=wd), params, x, 1)
  g = jax.grad(loss)(params, x)
  for k in params:
    np.testing.assert_allclose(got[k], params[k] - eta * (g[k] + wd * params[k]), rtol=1e-13)
  b1, b2, eps = 0.9, 0.999, 1e-8
  (got,) = run(make_optimizer("adam", eta, adam_b1=b1, adam_b2=b2, adam_eps=eps,
                                              weight_decay=wd), params, x, 1)
  (adamw,) = run(optax.adamw(eta, b1=b1, b2=b2, eps=eps, weight_decay=wd), params, x, 1)
  for k in params:
    d = np.asarray(g[k] + wd * params[k])
    m_hat = (1 - b1) * d / (1 - b1)
    v_hat = (1 - b2) * d ** 2 / (1 - b2)
    np.testing.assert_allclose(got[k], params[k] - eta * m_hat / (np.sqrt(v_hat) + eps),
                               rtol=1e-12)
    assert not np.allclose(got[k], adamw[k], rtol=1e-6)


def test_schedules_and_step_size_at():
  settings = OptimizerSettings("momentum", 0.2, hyper={"momentum": 0.5}, schedule="cosine",
                               total_steps=10)
  schedule = schedules.make_schedule("cosine", 0.2, total_steps=10)
  params, x = problem()
  ours = run(settings.make(), params, x, 3)
  ref = run(optax.sgd(schedule, momentum=0.5), params, x, 3)
  for a, b in zip(ours, ref, strict=True):
    assert_bitwise(a, b)
  assert float(schedules.step_size_at(settings.learning_rate(), jnp.int32(5))) == pytest.approx(0.1)
  assert float(schedules.step_size_at(0.3, jnp.int32(5))) == pytest.approx(0.3)
  traced = jax.jit(lambda s: schedules.step_size_at(schedule, s))(jnp.int32(10))
  assert float(traced) == pytest.approx(0.0)


@pytest.mark.parametrize("kwargs", [dict(name="adagrad"), dict(name="momentum", momentum=1.0),
                                    dict(name="nesterov", momentum=-1.0),
                                    dict(name="adam", adam_b2=1.0),
                                    dict(name="sgd", weight_decay=-0.1)])
def test_bad_settings_are_refused(kwargs):
  name = kwargs.pop("name")
  with pytest.raises(ValueError):
    make_optimizer(name, 0.1, **kwargs)


def test_find_adam_state_inside_a_chain():
  params, _ = problem()
  state = make_optimizer("adam", 0.1, weight_decay=0.1).init(params)
  found = adam_lib.find_adam_state(state)
  assert isinstance(found, optax.ScaleByAdamState) and int(found.count) == 0
  with pytest.raises(ValueError):
    adam_lib.find_adam_state(make_optimizer("momentum", 0.1).init(params))


@pytest.mark.parametrize("num_steps", [0, 3])
def test_adam_preconditioner_is_the_one_the_next_adam_step_applies(x64, num_steps):
  """After `num_steps` optax.adam steps: P by hand from ν, t and the next gradient d, and the next
  optax.adam update equals −η m̂ / P with m̂ = (β1 μ + (1 − β1) d)/(1 − β1^(t+1))."""
  params, x = problem(jnp.float64)
  eta, b1, b2, eps = 0.05, 0.8, 0.95, 1e-3
  adam = make_optimizer("adam", eta, adam_b1=b1, adam_b2=b2, adam_eps=eps)
  opt_state = adam.init(params)
  for _ in range(num_steps):
    updates, opt_state = adam.update(jax.grad(loss)(params, x), opt_state, params)
    params = optax.apply_updates(params, updates)
  d = jax.grad(loss)(params, x)
  precond = adam_lib.preconditioner_from_state(opt_state, d, b2, eps)
  state = adam_lib.find_adam_state(opt_state)
  t = num_steps
  assert int(state.count) == t
  next_update, _ = adam.update(d, opt_state, params)
  for k in params:
    nu, mu, dk = (np.asarray(a[k]) for a in (state.nu, state.mu, d))
    hand = np.sqrt((b2 * nu + (1 - b2) * dk ** 2) / (1 - b2 ** (t + 1))) + eps
    np.testing.assert_allclose(precond[k], hand, rtol=1e-13)
    m_hat = (b1 * mu + (1 - b1) * dk) / (1 - b1 ** (t + 1))
    np.testing.assert_allclose(next_update[k], -eta * m_hat / hand, rtol=1e-12)


def test_preconditioned_operator_matches_the_dense_matrix(x64):
  """`hvp.operator` with a diagonal P: v ↦ P^{-1/2} H P^{-1/2} v against dense algebra."""
  params, x = problem(jnp.float64)
  flat, unravel = ravel_pytree(params)
  hessian = np.asarray(jax.hessian(lambda w: loss(unravel(w), x))(flat))
  precond = jax.tree.map(lambda p: 0.5 + jnp.abs(p), params)     # any positive diagonal
  p_flat = np.asarray(ravel_pytree(precond)[0])
  dense = hessian / np.sqrt(np.outer(p_flat, p_flat))
  v = jax.random.normal(jax.random.PRNGKey(3), flat.shape, jnp.float64)
  matvec, _, _ = hvp.operator(loss, params, x, precondition=precond)
  np.testing.assert_allclose(matvec(v), dense @ np.asarray(v), rtol=1e-10, atol=1e-12)
  assert not np.allclose(dense, hessian, rtol=1e-2)          # P is not the identity


def test_every_optimizer_entry_is_complete():
  """Each table entry builds, has an edge formula and a title, and declares checked flags."""
  for name, entry in OPTIMIZERS.items():
    settings = OptimizerSettings(name, 0.1)
    assert settings.make() is not None
    assert isinstance(entry.edge_formula(settings.values), str)
    assert isinstance(entry.title(settings.values), str)
    assert all(o.problem(o.default) is None for o in entry.options)
