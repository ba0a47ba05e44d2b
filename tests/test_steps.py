"""SAM variants and plain steps, checked by hand on quadratics; ρ = 0 and m = B bitwise."""

import dataclasses
import re

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from sam_edge.optim import update
from sam_edge.optim.sam import SAM_VARIANTS, SamSettings
from sam_edge.optim.variants import adaptive, fisher, normalized, unnormalized
from tests.helpers import make_optimizer

A = jnp.diag(jnp.array([3.0, 1.0]))


def quadratic(params, batch):
  """L(w) = ½ wᵀ A w (the batch is unused); no model state."""
  w = params["w"]
  return 0.5 * w @ A @ w, {}


def jitted_update(loss_fn, optimizer, sam):
  """`update.sam_update` jitted as the run's training step jits it (the old state donated)."""
  return jax.jit(lambda state, batch: update.sam_update(loss_fn, optimizer, sam, state, batch),
                 donate_argnums=0)


def regression(params, batch):
  """Mean squared error of a tiny tanh model; aux: the mean pre-activation (a stand-in for
  BatchNorm statistics, a function of the parameters and the batch)."""
  pre = batch["x"] @ params["W"] + params["b"]                   # [B, 2]
  out = jnp.tanh(pre) @ params["v"]                              # [B]
  return jnp.mean((out - batch["y"]) ** 2), {"mean_pre": jnp.mean(pre, axis=0)}


def regression_problem(batch_size=12, dtype=jnp.float32):
  k = jax.random.split(jax.random.PRNGKey(1), 5)
  params = {"W": jax.random.normal(k[0], (3, 2), dtype), "b": jax.random.normal(k[1], (2,), dtype),
            "v": jax.random.normal(k[2], (2,), dtype)}
  batch = {"x": jax.random.normal(k[3], (batch_size, 3), dtype),
           "y": jax.random.normal(k[4], (batch_size,), dtype)}
  return params, batch


def assert_trees_equal(a, b):
  """Bitwise equality of every leaf (raw bits, so −0.0 ≠ 0.0)."""
  for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
    x, y = np.atleast_1d(np.asarray(x)), np.atleast_1d(np.asarray(y))
    assert x.dtype == y.dtype and x.shape == y.shape
    np.testing.assert_array_equal(x.view(np.uint8), y.view(np.uint8))


def test_sam_step_on_a_quadratic_by_hand():
  w = np.array([1.0, 2.0])
  eta, rho = 0.1, 0.5
  g = np.array([3.0, 2.0])                                  # A w
  w_adv = w + rho * g / (np.linalg.norm(g) + 1e-5)
  expected = w - eta * (np.diag([3.0, 1.0]) @ w_adv)
  state = update.init_state({"w": jnp.array(w)}, optax.sgd(eta))
  new_state, loss = jitted_update(quadratic, optax.sgd(eta),
                                           SamSettings(rho))(state, None)
  np.testing.assert_allclose(new_state.params["w"], expected, rtol=1e-6)
  assert float(loss) == pytest.approx(0.5 * (3 * 1 + 4), rel=1e-6)   # loss before the step
  assert int(new_state.step) == 1 and new_state.model_state == {}


def test_rho_zero_is_gradient_descent_exactly():
  params = {"w": jnp.array([0.3, -1.7])}
  optimizer = optax.sgd(0.2)
  expected = params["w"] - 0.2 * (A @ params["w"])
  state = update.init_state(params, optimizer)   # donated to the step: not used afterwards
  new_state, _ = jitted_update(quadratic, optimizer,
                                        SamSettings(0.0))(state, None)
  assert np.array_equal(np.asarray(new_state.params["w"]), np.asarray(expected))


PERTURBATIONS = {m.VARIANT.name: m.perturbation
                 for m in (normalized, unnormalized, adaptive, fisher)}
GROUPED = tuple(k for k, v in SAM_VARIANTS.items() if v.groups)
# gradients a step traces: LookSAM's cheap branch adds none, Random-SAM's smoothing one more,
# Momentum-SAM takes its one at w + ε only
TRACED = {**{kind: 2 for kind in SAM_VARIANTS}, "random": 3, "msam": 1}


def per_example(loss_fn):
  """Per-example losses of `loss_fn` (each example taken alone), for ESAM's selection."""
  return lambda p, b: jax.vmap(lambda e: loss_fn(p, jax.tree.map(lambda x: x[None], e))[0])(b)


def variant_inputs(kind, params, loss_fn=None):
  """The keyword arguments a step of `kind` reads: its state, a key, the per-example losses."""
  sam = SamSettings(0.1, kind)
  return {"state": update.init_state(params, optax.sgd(0.1), sam=sam).sam_state,
          "key": jax.random.PRNGKey(3), "example_losses": per_example(loss_fn or regression)}


@pytest.mark.parametrize("kind", tuple(SAM_VARIANTS))
def test_rho_zero_evaluates_one_gradient(kind):
  calls = []

  def counting_loss(params, batch):
    calls.append(1)            # runs at trace time: counts gradient evaluations in the program
    return regression(params, batch)

  params, batch = regression_problem()
  extra = variant_inputs(kind, params)
  for group_size in (None, 4) if kind in GROUPED else (None,):
    calls.clear()
    update.sam_gradients(counting_loss, params, batch, SamSettings(0.0, kind, group_size),
                         **extra)
    assert len(calls) == 1
  calls.clear()
  update.sam_gradients(counting_loss, params, batch, SamSettings(0.1, kind), **extra)
  assert len(calls) == TRACED[kind]


@pytest.mark.parametrize("kind", tuple(SAM_VARIANTS))
def test_zero_gradient_never_gives_nan(kind):
  """At a minimum (g = 0) every variant's direction is finite; those given by a perturbation
  perturb by exactly 0 (Random-SAM still draws δ, ESAM still takes a subset)."""
  params, batch = {"w": jnp.zeros(2)}, {"x": jnp.zeros((4, 1))}
  grads = update.sam_gradients(quadratic, params, batch, SamSettings(0.5, kind),
                               **variant_inputs(kind, params, quadratic))
  assert np.all(np.isfinite(grads.direction["w"]))
  if kind in PERTURBATIONS:
    assert np.all(grads.direction["w"] == 0)
    hyper = {"asam_xi": 0.0} if kind == "adaptive" else {}
    values = SamSettings(0.5, kind, hyper=hyper).values
    assert np.all(PERTURBATIONS[kind](params, params, 0.5, values)["w"] == 0)


def test_sam_gradient_is_available_on_its_own():
  w = jnp.array([1.0, 2.0])
  grads = jax.jit(lambda p: update.sam_gradients(quadratic, p, None, SamSettings(0.5)))(
      {"w": w})
  g = A @ w
  np.testing.assert_allclose(grads.grad["w"], g, rtol=1e-6)
  np.testing.assert_allclose(grads.direction["w"], A @ (w + 0.5 * g / (jnp.linalg.norm(g) + 1e-5)),
                             rtol=1e-6)
  assert grads.aux == {}


def test_unnormalized_sam_one_step_by_hand(x64):
  """ε = ρ g: w' = w − η A (w + ρ A w) on L = ½ wᵀ A w with a full (non-diagonal) A."""
  a = np.array([[2.0, 0.5, 0.0], [0.5, 1.0, -0.3], [0.0, -0.3, 0.7]])
  w = np.array([0.4, -1.2, 2.0])
  eta, rho = 0.1, 0.3
  expected = w - eta * a @ (w + rho * a @ w)
  loss_fn = lambda p, b: (0.5 * p["w"] @ jnp.asarray(a) @ p["w"], {})
  state = update.init_state({"w": jnp.asarray(w)}, optax.sgd(eta))
  new_state, _ = update.sam_update(loss_fn, optax.sgd(eta), SamSettings(rho, "unnormalized"),
                                  state, None)
  np.testing.assert_allclose(new_state.params["w"], expected, rtol=1e-14)


def test_asam_one_step_by_hand(x64):
  """ε = ρ T² g/||T g||, T = |w| + ξ: w' = w − η A (w + ε) on L = ½ wᵀ A w (w has a zero entry,
  where T = ξ)."""
  a = np.array([[2.0, 0.5, 0.0], [0.5, 1.0, -0.3], [0.0, -0.3, 0.7]])
  w = np.array([0.4, 0.0, -2.0])
  eta, rho, xi = 0.1, 0.3, 0.05
  g = a @ w
  t = np.abs(w) + xi
  eps = rho * t ** 2 * g / np.linalg.norm(t * g)
  expected = w - eta * a @ (w + eps)
  loss_fn = lambda p, b: (0.5 * p["w"] @ jnp.asarray(a) @ p["w"], {})
  state = update.init_state({"w": jnp.asarray(w)}, optax.sgd(eta))
  new_state, _ = update.sam_update(loss_fn, optax.sgd(eta),
                                  SamSettings(rho, "adaptive", hyper={"asam_xi": xi}), state, None)
  np.testing.assert_allclose(new_state.params["w"], expected, rtol=1e-14)
  # ξ defaults to Kwon et al.'s 0.01
  assert SamSettings(rho, "adaptive").values["asam_xi"] == 0.01


BASES = [("sgd", {}), ("momentum", {"momentum": 0.9}), ("momentum", {"momentum": -0.5}),
         ("nesterov", {"momentum": 0.9}), ("adam", {}), ("adam", {"weight_decay": 0.01}),
         ("momentum", {"momentum": 0.9, "weight_decay": 0.01})]


@pytest.mark.parametrize("name, kwargs, kind",
                         [(n, k, "normalized") for n, k in BASES]
                         + [("momentum", {"momentum": 0.9}, "unnormalized"),
                            ("adam", {}, "adaptive")]
                         + [(n, k, kind) for kind in SAM_VARIANTS
                            if kind not in ("normalized", "unnormalized", "adaptive")
                            for n, k in (("momentum", {"momentum": 0.9}),)])
def test_rho_zero_is_bitwise_the_base_optimizer(name, kwargs, kind):
  """Several jitted steps of our update with ρ = 0 against a bare jitted optax loop, for every
  variant (its state, key and per-example losses given as a run gives them)."""
  optimizer = make_optimizer(name, 0.05, **kwargs)
  params, batch = regression_problem()
  extra = variant_inputs(kind, params)
  extra.pop("state")
  sam = SamSettings(0.0, kind)
  step_fn = jax.jit(lambda state, batch: update.sam_update(regression, optimizer, sam, state, batch,
                                                           **extra), donate_argnums=0)

  @jax.jit
  def bare(params, opt_state):
    loss, grad = jax.value_and_grad(lambda p: regression(p, batch)[0])(params)
    updates, opt_state = optimizer.update(grad, opt_state, params)
    return optax.apply_updates(params, updates), opt_state, loss

  state = update.init_state(jax.tree.map(jnp.copy, params), optimizer, sam=sam)
  first_sam_state = jax.tree.map(np.asarray, state.sam_state)
  ref_params, ref_opt = params, optimizer.init(params)
  for _ in range(5):
    state, loss = step_fn(state, batch)
    ref_params, ref_opt, ref_loss = bare(ref_params, ref_opt)
    assert_trees_equal((state.params, state.opt_state, loss), (ref_params, ref_opt, ref_loss))
  assert_trees_equal(state.sam_state, first_sam_state)          # ρ = 0 leaves it as it is
  assert not np.allclose(state.params["b"], params["b"])


def hand_group_loop(loss_fn, params, batch, sam, m):
  """m-sharpness by hand: a Python loop over consecutive groups of m examples, averaged (each
  group's ε and ∇L(w + ε) dropped, as the grouped step keeps none)."""
  size = batch["x"].shape[0]
  plain = jax.jit(lambda p, b: update.sam_gradients(
      loss_fn, p, b, dataclasses.replace(sam, group_size=None))._replace(
          eps=None, perturbed_grad=None))
  parts = [plain(params, jax.tree.map(lambda a: a[i:i + m], batch)) for i in range(0, size, m)]
  return jax.tree.map(lambda *xs: sum(xs) / len(xs), *parts)


@pytest.mark.parametrize("kind", GROUPED)
def test_group_size_below_the_batch_is_a_loop_over_groups(x64, kind):
  params, batch = regression_problem(12, jnp.float64)
  sam = SamSettings(0.2, kind, group_size=3)
  got = jax.jit(lambda p, b: update.sam_gradients(regression, p, b, sam))(params, batch)
  hand = hand_group_loop(regression, params, batch, sam, 3)
  for a, b in zip(jax.tree.leaves(got), jax.tree.leaves(hand), strict=True):
    np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-14)
  plain = update.sam_gradients(regression, params, batch, SamSettings(0.2, kind))
  np.testing.assert_allclose(got.grad["W"], plain.grad["W"], rtol=1e-12)   # ∇L: the same mean
  np.testing.assert_allclose(got.loss, plain.loss, rtol=1e-12)
  assert not np.allclose(got.direction["W"], plain.direction["W"], rtol=1e-3)  # per-group ε


def test_groups_are_scanned_not_vectorised():
  """Memory stays that of one group: the groups are a lax.scan, whose body sees m examples."""
  params, batch = regression_problem(12)
  jaxpr = jax.make_jaxpr(lambda p, b: update.sam_gradients(
      regression, p, b, SamSettings(0.2, group_size=4)))(params, batch)
  scans = [e for e in jaxpr.jaxpr.eqns if e.primitive.name == "scan"]
  assert len(scans) == 1 and scans[0].params["length"] == 3
  body_shapes = {v.aval.shape for v in scans[0].params["jaxpr"].jaxpr.invars}
  assert (4, 3) in body_shapes and (12, 3) not in body_shapes


@pytest.mark.parametrize("name", ["sgd", "adam"])
def test_group_size_equal_to_the_batch_is_bitwise_plain_sam(name):
  optimizer = make_optimizer(name, 0.05)
  params, batch = regression_problem(8)
  results = []
  for group_size in (None, 8):
    step_fn = jitted_update(regression, optimizer,
                                    SamSettings(0.3, group_size=group_size))
    state = update.init_state(jax.tree.map(jnp.copy, params), optimizer)
    for _ in range(3):
      state, loss = step_fn(state, batch)
    results.append((state.params, state.opt_state, loss))
  assert_trees_equal(results[0], results[1])


def test_a_group_size_that_does_not_divide_the_batch_is_refused():
  params, batch = regression_problem(12)
  with pytest.raises(ValueError, match="does not divide"):
    update.sam_gradients(regression, params, batch, SamSettings(0.1, group_size=5))


@pytest.mark.parametrize("settings", [dict(rho=-0.1), dict(rho=0.1, kind="sharp"),
                                      dict(rho=0.1, group_size=0),
                                      dict(rho=0.1, kind="adaptive", hyper={"asam_xi": -1.0}),
                                      dict(rho=jnp.float32(0.1))])
def test_bad_sam_settings_are_refused(settings):
  bad = SamSettings(**settings)
  assert bad.problems()
  params, batch = regression_problem(12)
  with pytest.raises(ValueError, match="; ".join(map(re.escape, bad.problems()))):
    update.sam_gradients(regression, params, batch, bad)


def test_model_state_comes_from_the_unperturbed_pass_and_is_threaded(x64):
  """A model whose state s is a running mean of the pre-activation mean μ(w, batch):
  s ← 0.5 s + 0.5 μ(w) with w the *unperturbed* parameters, and the loss reads s. Two steps by
  hand (the SAM ascent's aux, μ(w + ε), is discarded)."""
  params, batch = regression_problem(6, jnp.float64)

  def model_loss(params, model_state, batch):
    loss, aux = regression(params, batch)
    loss = loss + 0.1 * jnp.sum(model_state["s"] * params["b"])   # the loss reads the state
    return loss, {"s": 0.5 * model_state["s"] + 0.5 * aux["mean_pre"]}

  optimizer, sam = optax.sgd(0.1), SamSettings(0.5)
  state = update.init_state(jax.tree.map(jnp.copy, params), optimizer, {"s": jnp.ones(2)})
  step = jax.jit(lambda state, batch: update.sam_update(
      lambda p, b: model_loss(p, state.model_state, b), optimizer, sam, state, batch),
      donate_argnums=0)
  w, s = params, jnp.ones(2)
  state, _ = step(state, batch)
  state, _ = step(state, batch)
  direction = jax.jit(lambda w, s: update.sam_gradients(
      lambda p, b: model_loss(p, {"s": s}, b), w, batch, sam).direction)
  for _ in range(2):
    g = direction(w, s)
    s = 0.5 * s + 0.5 * regression(w, batch)[1]["mean_pre"]
    w = jax.tree.map(lambda p, g: p - 0.1 * g, w, g)
  np.testing.assert_allclose(state.model_state["s"], s, rtol=1e-13)
  np.testing.assert_allclose(state.params["W"], w["W"], rtol=1e-13)
  assert int(state.step) == 2


def test_group_aux_is_the_mean_over_groups(x64):
  params, batch = regression_problem(12, jnp.float64)
  got = update.sam_gradients(regression, params, batch, SamSettings(0.2, group_size=4))
  per_group = [regression(params, jax.tree.map(lambda a: a[i:i + 4], batch))[1]["mean_pre"]
               for i in (0, 4, 8)]
  np.testing.assert_allclose(got.aux["mean_pre"], np.mean(per_group, axis=0), rtol=1e-13)
