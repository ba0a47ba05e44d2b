"""The SAM family beyond plain SAM (GSAM, LookSAM, ESAM, Fisher-SAM, Friendly-SAM, Random-SAM,
SAM-ON): one step of each by hand on a quadratic, and the equalities the papers promise (LookSAM
with k = 1 and GSAM with α = 0 are SAM, SAM-ON perturbs nothing outside normalisation layers)."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from sam_edge.models import normalization, registry, transformer
from sam_edge.optim import optimizers, sam_steps, update
from sam_edge.optim.method import Method
from sam_edge.optim.sam import SAM_VARIANTS, SamSettings

A = np.array([[2.0, 0.5, 0.0], [0.5, 1.0, -0.3], [0.0, -0.3, 0.7]])
W = np.array([0.4, -1.2, 2.0])
ETA = 0.1
KEY = jax.random.PRNGKey(7)


def quadratic(params, batch):
  """L(w) = ½ wᵀ A w (the batch is unused); no model state."""
  return 0.5 * params["w"] @ jnp.asarray(A) @ params["w"], {}


def unit(v, eps=0.0):
  return v / (np.linalg.norm(v) + eps)


def sam_point(w, rho):
  """w + ρ g/(‖g‖ + 1e-5) with g = A w: where plain SAM takes its second gradient."""
  return w + rho * unit(A @ w, 1e-5)


def steps(sam, n, w=W, batch=None, loss_fn=quadratic, example_losses=None):
  """n jitted SGD steps of `sam` from {"w": w}: the states after each, as a list."""
  optimizer = optax.sgd(ETA)
  state = update.init_state({"w": jnp.asarray(w)}, optimizer, sam=sam)
  step = jax.jit(lambda state, batch: update.sam_update(
      loss_fn, optimizer, sam, state, batch, key=sam_steps.step_key(KEY, state.step),
      example_losses=example_losses))
  out = []
  for _ in range(n):
    state, _ = step(state, batch)
    out.append(state)
  return out


def test_fisher_sam_one_step_by_hand(x64):
  """ε = ρ f⁻¹⊙g/√(g·(f⁻¹⊙g)), f = 1 + η_f g⊙g; w' = w − η A (w + ε)."""
  rho, eta_f = 0.3, 2.0
  g = A @ W
  scaled = g / (1 + eta_f * g * g)
  eps = rho * scaled / np.sqrt(g @ scaled)
  (state,) = steps(SamSettings(rho, "fisher", hyper={"fisher_eta": eta_f}), 1)
  np.testing.assert_allclose(state.params["w"], W - ETA * A @ (W + eps), rtol=1e-13)
  # η_f = 0 is f = 1: normalized SAM without the 1e-5
  (state,) = steps(SamSettings(rho, "fisher", hyper={"fisher_eta": 0.0}), 1)
  np.testing.assert_allclose(state.params["w"], W - ETA * A @ (W + rho * unit(g)), rtol=1e-13)


def test_gsam_one_step_by_hand(x64):
  """d = g_p − α g_⊥, g_⊥ = g − (g·ĝ_p) ĝ_p."""
  rho, alpha = 0.3, 0.4
  g = A @ W
  g_p = A @ sam_point(W, rho)
  g_perp = g - (g @ unit(g_p)) * unit(g_p)
  (state,) = steps(SamSettings(rho, "gsam", hyper={"gsam_alpha": alpha}), 1)
  np.testing.assert_allclose(state.params["w"], W - ETA * (g_p - alpha * g_perp), rtol=1e-13)
  assert abs(g_perp @ g_p) < 1e-12                # g_⊥ ⟂ g_p


def test_gsam_rho_follows_the_step_size_schedule(x64):
  """ρ_t = ρ_min + (ρ − ρ_min)(η_t − η_min)/(η_max − η_min) on a cosine schedule of 10 steps
  (η_max = η at step 0, η_min = 0): the step at t = 4 by hand."""
  rho, rho_min, t = 0.3, 0.05, 4
  schedule = optimizers.OptimizerSettings("sgd", 0.2, schedule="cosine", total_steps=10)
  eta_t = 0.2 * 0.5 * (1 + np.cos(np.pi * t / 10))
  rho_t = rho_min + (rho - rho_min) * eta_t / 0.2
  sam = Method.of(schedule, SamSettings(rho, "gsam", hyper={"gsam_alpha": 0.0,
                                                           "gsam_rho_schedule": rho_min})).sam
  got = update.sam_gradients(quadratic, {"w": jnp.asarray(W)}, None, sam, step=t)
  np.testing.assert_allclose(got.direction["w"], A @ sam_point(W, rho_t), rtol=1e-12)
  # at step 0 ρ_t = ρ (η_0 = η_max)
  got = update.sam_gradients(quadratic, {"w": jnp.asarray(W)}, None, sam, step=0)
  np.testing.assert_allclose(got.direction["w"], A @ sam_point(W, rho), rtol=1e-12)


def test_looksam_two_steps_by_hand(x64):
  """k = 2: step 0 is SAM's and keeps g_v = g_p − (g_p·ĝ)ĝ; step 1 takes g + α(‖g‖/‖g_v‖) g_v at
  its own w, and keeps g_v."""
  rho, alpha = 0.3, 0.7
  sam = SamSettings(rho, "looksam", hyper={"looksam_every": 2, "looksam_alpha": alpha})
  g0 = A @ W
  g_p = A @ sam_point(W, rho)
  g_v = g_p - (g_p @ unit(g0)) * unit(g0)
  w1 = W - ETA * g_p
  g1 = A @ w1
  w2 = w1 - ETA * (g1 + alpha * np.linalg.norm(g1) / np.linalg.norm(g_v) * g_v)
  first, second = steps(sam, 2)
  np.testing.assert_allclose(first.params["w"], w1, rtol=1e-13)
  np.testing.assert_allclose(first.sam_state["g_v"]["w"], g_v, rtol=1e-12, atol=1e-15)
  np.testing.assert_allclose(second.params["w"], w2, rtol=1e-13)
  np.testing.assert_array_equal(second.sam_state["g_v"]["w"], first.sam_state["g_v"]["w"])


def test_looksam_cheap_steps_take_one_gradient():
  """Between its SAM steps LookSAM evaluates one gradient: a `lax.cond` whose cheap branch holds
  a single pass (counted at run time by a callback in the loss)."""
  calls = []

  def counting(params, batch):
    jax.debug.callback(lambda: calls.append(1))
    return quadratic(params, batch)

  sam = SamSettings(0.3, "looksam", hyper={"looksam_every": 3})
  steps(sam, 3, loss_fn=counting)
  assert len(calls) == 2 + 1 + 1


def regression_losses(params, batch):
  """[B]: (w·x_b − y_b)² per example."""
  return (batch["x"] @ params["w"] - batch["y"]) ** 2


def regression(params, batch):
  return jnp.mean(regression_losses(params, batch)), {}


def test_esam_one_step_by_hand(x64):
  """β = 1 (every weight perturbed): ε = ρ g/(‖g‖ + 1e-5); the second gradient is that of the
  mean loss of the round(γB) examples whose loss rose most from w to w + ε."""
  rho, gamma = 0.5, 0.5
  rng = np.random.default_rng(0)
  x, y = rng.normal(size=(8, 3)), rng.normal(size=8)
  batch = {"x": jnp.asarray(x), "y": jnp.asarray(y)}
  g = 2 * x.T @ (x @ W - y) / 8
  adv = W + rho * unit(g, 1e-5)
  rise = (x @ adv - y) ** 2 - (x @ W - y) ** 2
  chosen = np.argsort(-rise)[:4]
  d = 2 * x[chosen].T @ (x[chosen] @ adv - y[chosen]) / 4
  sam = SamSettings(rho, "esam", hyper={"esam_weight_fraction": 1.0,
                                        "esam_example_fraction": gamma})
  (state,) = steps(sam, 1, batch=batch, loss_fn=regression, example_losses=regression_losses)
  np.testing.assert_allclose(state.params["w"], W - ETA * d, rtol=1e-12)


def test_esam_perturbs_a_bernoulli_subset_rescaled(x64):
  """On L = ½‖w‖² (d = w + ε) with 4000 weights: each ε_i is 0 or ε_ρ(g)_i/β, and the share
  perturbed is β to sampling error; a different step draws a different subset."""
  beta, rho = 0.3, 1.0
  w = jnp.asarray(np.random.default_rng(1).normal(size=4000))
  loss = lambda p, b: (0.5 * jnp.sum(p["w"] ** 2), {})
  per_example = lambda p, b: jnp.full(b["x"].shape[0], 0.5 * jnp.sum(p["w"] ** 2))
  sam = SamSettings(rho, "esam", hyper={"esam_weight_fraction": beta})
  batch = {"x": jnp.zeros((4, 1))}
  eps = [np.asarray(update.sam_gradients(loss, {"w": w}, batch, sam, step=t,
                                         key=sam_steps.step_key(KEY, t),
                                         example_losses=per_example).direction["w"] - w)
         for t in (0, 1)]
  full = np.asarray(w) * rho / (np.linalg.norm(w) + 1e-5) / beta
  for e in eps:
    on = e != 0
    np.testing.assert_allclose(e[on], full[on], rtol=1e-9)
    assert abs(on.mean() - beta) < 4 * np.sqrt(beta * (1 - beta) / 4000)
  assert np.any((eps[0] != 0) != (eps[1] != 0))


def test_friendly_sam_two_steps_by_hand(x64):
  """m ← λ m + (1 − λ) g (m = 0 at first), ε = ρ (g − σ m)/(‖g − σ m‖ + 1e-5)."""
  rho, sigma, lam = 0.3, 0.8, 0.6
  sam = SamSettings(rho, "friendly", hyper={"friendly_sigma": sigma, "friendly_lambda": lam})
  w, m = W, np.zeros(3)
  for state in steps(sam, 2):
    g = A @ w
    m = lam * m + (1 - lam) * g
    w = w - ETA * A @ (w + rho * unit(g - sigma * m, 1e-5))
    np.testing.assert_allclose(state.params["w"], w, rtol=1e-13)
    np.testing.assert_allclose(state.sam_state["m"]["w"], m, rtol=1e-13)


def test_random_sam_one_step_by_hand(x64):
  """δ ~ N(0, σ²I) drawn from the step's key, ε = δ + λρ ∇L(w+δ)/(‖∇L(w+δ)‖ + 1e-5)."""
  rho, sigma, lam = 0.3, 0.2, 0.5
  (leaf_key,) = jax.random.split(sam_steps.step_key(KEY, 0), 1)
  delta = sigma * np.asarray(jax.random.normal(leaf_key, (3,), jnp.float64))
  smoothed = A @ (W + delta)
  eps = delta + lam * rho * unit(smoothed, 1e-5)
  sam = SamSettings(rho, "random", hyper={"random_sam_sigma": sigma, "random_sam_lambda": lam})
  (state,) = steps(sam, 1)
  np.testing.assert_allclose(state.params["w"], W - ETA * A @ (W + eps), rtol=1e-13)
  # σ = 0: δ = 0, so the step is SAM's with radius λρ
  sam = SamSettings(rho, "random", hyper={"random_sam_sigma": 0.0, "random_sam_lambda": lam})
  (state,) = steps(sam, 1)
  np.testing.assert_allclose(state.params["w"], W - ETA * A @ sam_point(W, lam * rho),
                             rtol=1e-13)


def assert_bitwise_equal(a, b):
  for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
    np.testing.assert_array_equal(np.asarray(x).view(np.uint8), np.asarray(y).view(np.uint8))


@pytest.mark.parametrize("alpha", [0.0, 0.7])
def test_looksam_every_step_is_plain_sam(alpha):
  """k = 1: every step is SAM's (α plays no part), bitwise, over several steps."""
  plain = steps(SamSettings(0.3), 4)
  look = steps(SamSettings(0.3, "looksam", hyper={"looksam_every": 1, "looksam_alpha": alpha}),
               4)
  for p, q in zip(plain, look, strict=True):
    assert_bitwise_equal(p.params, q.params)


def test_gsam_with_alpha_zero_is_plain_sam():
  plain = steps(SamSettings(0.3), 4)
  gsam = steps(SamSettings(0.3, "gsam", hyper={"gsam_alpha": 0.0}), 4)
  for p, q in zip(plain, gsam, strict=True):
    assert_bitwise_equal(p.params, q.params)


# ---------------------------------------------------------------- SAM-ON

def shapes(init):
  return jax.eval_shape(init)


def test_normalisation_layers_are_found_in_every_model():
  """ResNet-20's 19 BatchNorms, the CNN's and the transformer's LayerNorms (scale and offset
  each); no kernel, and nothing in the MLP."""
  def found(params):
    return sorted(jax.tree_util.keystr(p) for p, keep in
                  jax.tree_util.tree_leaves_with_path(normalization.mask(params)) if keep)

  res = registry.build("ResNet20", num_classes=10)
  params = shapes(lambda: res.init(KEY, jnp.zeros((1, 8, 8, 1)), False))["params"]
  names = found(params)
  assert len(names) == 2 * 19 and all(n.endswith(("['scale']", "['bias']")) for n in names)
  assert "['stem_bn']['scale']" in names
  mlp = registry.build("MLP", {"mlp_depth": 2, "mlp_width": 8}, num_classes=3)
  assert found(shapes(lambda: mlp.init(KEY, jnp.zeros((1, 8, 8, 1))))["params"]) == []
  cnn = registry.build("CNN", {"cnn_num_blocks": 1, "cnn_feature_multiplier": 4}, num_classes=3)
  cnn_names = found(shapes(lambda: cnn.init(KEY, jnp.zeros((1, 8, 8, 1))))["params"])
  assert cnn_names and all("LayerNorm" in n for n in cnn_names)
  lm = transformer.make_language_model(vocab_size=5, model_size=8, num_heads=2, num_layers=1)
  lm_names = found(shapes(lambda: lm.init(KEY, jnp.zeros((1, 4), jnp.int32))))
  assert len(lm_names) == 2 * 3 and all("layer_norm" in n for n in lm_names)


NORM_PARAMS = {"Dense_0": {"kernel": jnp.array([[0.5, -1.0], [2.0, 0.3]]),
                           "bias": jnp.array([0.1, -0.2])},
               "LayerNorm_0": {"scale": jnp.array([1.0, 0.8]), "bias": jnp.array([0.3, 0.0])}}


def norm_loss(points):
  """A loss coupling every parameter, recording each point it is evaluated at."""
  def loss(params, batch):
    jax.debug.callback(lambda p: points.append(jax.tree.map(np.asarray, p)), params)
    d, n = params["Dense_0"], params["LayerNorm_0"]
    h = jnp.tanh(batch["x"] @ d["kernel"] + d["bias"]) * n["scale"] + n["bias"]
    per = jnp.sum((h - batch["y"]) ** 2, axis=-1)
    return jnp.mean(per), {}
  return loss


@pytest.mark.parametrize("kind", tuple(SAM_VARIANTS))
def test_sam_on_perturbs_only_the_normalisation_layers(kind):
  """With --sam_params=normalization every point where a variant takes a gradient differs from
  w only in the LayerNorm's scale and offset: the perturbation of every other parameter is
  exactly 0 (and the normalisation parameters do move)."""
  points = []
  loss = norm_loss(points)
  rng = np.random.default_rng(2)
  batch = {"x": jnp.asarray(rng.normal(size=(8, 2)), jnp.float32),
           "y": jnp.asarray(rng.normal(size=(8, 2)), jnp.float32)}
  per_example = lambda p, b: jax.vmap(lambda e: loss(p, jax.tree.map(lambda x: x[None], e))[0])(b)
  sam = SamSettings(0.2, kind, perturbed="normalization")
  state = update.init_state(NORM_PARAMS, optax.sgd(0.1), sam=sam).sam_state
  if kind == "msam":       # its buffer m starts at 0 (no perturbation): one along every weight
    state = {"m": jax.tree.map(jnp.ones_like, NORM_PARAMS)}
  update.sam_gradients(loss, NORM_PARAMS, batch, sam, state=state, key=KEY,
                       example_losses=per_example)
  assert len(points) >= (1 if kind == "msam" else 2)
  moved = False
  for point in points:
    assert_bitwise_equal(point["Dense_0"], NORM_PARAMS["Dense_0"])
    moved |= not all(np.array_equal(point["LayerNorm_0"][k], NORM_PARAMS["LayerNorm_0"][k])
                     for k in ("scale", "bias"))
  assert moved


def test_sam_on_needs_normalisation_layers():
  with pytest.raises(ValueError, match="no normalisation layers"):
    update.sam_gradients(quadratic, {"w": jnp.asarray(W)}, None,
                         SamSettings(0.1, perturbed="normalization"))


def test_looksam_steps_chosen_on_the_host_are_the_cond_steps(x64, monkeypatch):
  """Where branches run on the host (`oracle.host_loops`: the CPU) LookSAM's SAM and reuse steps
  are compiled apart (phase fixed at trace time) and chosen by t mod k on the host
  (`update.host_phased`); they give the `lax.cond` step's states. Elsewhere one step."""
  monkeypatch.setattr(update, "host_loops", lambda: True)
  sam = SamSettings(0.3, "looksam", hyper={"looksam_every": 3, "looksam_alpha": 0.7})
  assert sam.host_period() == 3
  assert SamSettings(0.3, "looksam", hyper={"looksam_every": 1}).host_period() is None
  assert SamSettings(0.0, "looksam", hyper={"looksam_every": 3}).host_period() is None
  assert SamSettings(0.3, "gsam").host_period() is None
  assert dataclasses.replace(sam, phase=True).host_period() is None
  assert SamSettings(0.3, "looksam", phase="sam").problems() == [
      "the SAM phase must be None, True or False, got 'sam'"]
  optimizer = optax.sgd(ETA)
  made = []

  def make(phased_sam):
    made.append(phased_sam.phase)
    return jax.jit(lambda state: update.sam_update(quadratic, optimizer, phased_sam, state, None,
                                                   key=KEY)[0])
  phased = update.host_phased(make, sam)
  assert made == [True, False]
  state = update.init_state({"w": jnp.asarray(W)}, optimizer, sam=sam)
  for t, expected in enumerate(steps(sam, 7)):
    state = phased(t)(state)
    np.testing.assert_allclose(state.params["w"], expected.params["w"], rtol=1e-13)
    np.testing.assert_allclose(state.sam_state["g_v"]["w"], expected.sam_state["g_v"]["w"],
                               rtol=1e-13, atol=1e-15)
  monkeypatch.setattr(update, "host_loops", lambda: False)
  update.host_phased(make, sam)
  assert made == [True, False, None]
