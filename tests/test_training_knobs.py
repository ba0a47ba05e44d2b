"""The SAM paper's training knobs, each formula by hand on a tiny problem: the clip of the
optimizer's direction, L2 in the loss (SAM's ε and step, the measured Hessian, the Gauss–Newton
matrix), the decay mask, the edges, the settings' checks and the titles (the moving average of
the weights: tests/test_ema.py). The tiny problem and its training loop serve both files."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from sam_edge.curvature import measure
from sam_edge.curvature.kinds import gauss_newton
from sam_edge.models import normalization
from sam_edge.optim import edges, regularization, sam_steps, update
from sam_edge.optim.method import Method
from sam_edge.optim.optimizers import OptimizerSettings
from sam_edge.optim.sam import SamSettings
from sam_edge.run import components, devices
from sam_edge.run.problem import Problem

ETA, WD, RHO = 0.1, 0.05, 0.2


def tiny_params(dtype=jnp.float64) -> dict:
  """A dense layer (kernel, bias) followed by a normalisation layer's scale and offset."""
  k = jax.random.split(jax.random.PRNGKey(0), 4)
  return {"Dense_0": {"kernel": jax.random.normal(k[0], (3, 2), dtype),
                      "bias": jax.random.normal(k[1], (2,), dtype)},
          "LayerNorm_0": {"scale": 1.0 + 0.1 * jax.random.normal(k[2], (2,), dtype),
                          "bias": 0.1 * jax.random.normal(k[3], (2,), dtype)}}


def forward(p, s, batch, constants, dtype=jnp.float32):
  """tanh(x W + b)·scale + offset; the model state follows the outputs' batch mean as BatchNorm's
  statistics do (s ← 0.9 s + 0.1 mean)."""
  h = jnp.tanh(batch["x"] @ p["Dense_0"]["kernel"] + p["Dense_0"]["bias"])
  out = h * p["LayerNorm_0"]["scale"] + p["LayerNorm_0"]["bias"]
  return out, {"mean": 0.9 * s["mean"] + 0.1 * jnp.mean(out, axis=0)}


def output_loss(out, batch):
  return 0.5 * jnp.mean(jnp.sum((out - batch["y"]) ** 2, axis=-1))


def tiny_problem() -> Problem:
  rng = np.random.default_rng(0)
  arrays = {"x": rng.normal(size=(6, 3)), "y": rng.normal(size=(6, 2))}
  params = tiny_params()

  def evaluate(p, s, c):
    out, _ = forward(p, s, arrays, {})
    return {"test_loss": float(output_loss(out, arrays)), "test_error": float(out[0, 0])}
  return Problem(forward=forward, output_loss=output_loss, params=params, train_arrays=arrays,
                 evaluate=evaluate, report=lambda e: f"Test loss: {e['test_loss']}",
                 model_state={"mean": jnp.zeros(2, jnp.float64)})


def data_loss(p, batch):
  return output_loss(forward(p, {"mean": jnp.zeros(2)}, batch, {})[0], batch)


def train(method: OptimizerSettings, steps: int, *, rho: float = 0.0, ema_decay=None):
  """`steps` full-batch steps of the run's own training step (`components.make_train_step`,
  which donates its state): host copies of the states after each step, the first included."""
  problem = tiny_problem()
  place = devices.placement(1)
  step = components.make_train_step(problem, method, SamSettings(rho=rho),
                                    components.batch_order(problem, 6), place,
                                    ema_decay=ema_decay)
  state = update.init_state(problem.params, method.make(), problem.model_state,
                            average=ema_decay is not None)
  arrays, key, states = problem.train_arrays, jax.random.PRNGKey(1), [jax.device_get(state)]
  for _ in range(steps):
    state, _, _ = step(state, {}, arrays, key, None, {})
    states.append(jax.device_get(state))
  return problem, states


def assert_trees_close(a, b, rtol=1e-12, atol=1e-14):
  jax.tree.map(lambda x, y: np.testing.assert_allclose(np.asarray(x), np.asarray(y), rtol=rtol,
                                                       atol=atol), a, b)


def test_the_clip_scales_the_direction_by_min_1_c_over_its_norm(x64):
  """c(d) = d·min(1, c/‖d‖) on d = (3, 4) (‖d‖ = 5), after the decay is added."""
  w = {"a": jnp.array([1.0, -2.0])}
  d = {"a": jnp.array([3.0, 4.0])}
  for clip, factor in ((1.0, 0.2), (2.5, 0.5), (10.0, 1.0)):
    opt = OptimizerSettings("sgd", ETA, clip=clip).make()
    updates, _ = opt.update(d, opt.init(w), w)
    np.testing.assert_allclose(updates["a"], -ETA * factor * d["a"], rtol=1e-15)
  opt = OptimizerSettings("sgd", ETA, clip=10.0).make()
  np.testing.assert_array_equal(opt.update(d, opt.init(w), w)[0]["a"], -ETA * d["a"])
  opt = OptimizerSettings("sgd", ETA, weight_decay=WD, clip=1.0).make()
  decayed = d["a"] + WD * w["a"]
  expected = -ETA * decayed * min(1.0, 1.0 / float(jnp.linalg.norm(decayed)))
  np.testing.assert_allclose(opt.update(d, opt.init(w), w)[0]["a"], expected, rtol=1e-15)


def test_l2_in_the_loss_turns_sam_s_perturbation_and_step(x64):
  """In the loss: ε = ρ∇(L+R)/‖∇(L+R)‖ and w1 = w0 − η∇(L+R)(w0 + ε); in the optimizer:
  ε = ρ∇L/‖∇L‖ and w1 = w0 − η(∇L(w0 + ε) + λ w0)."""
  problem = tiny_problem()
  w0, batch = problem.params, problem.train_arrays
  penalty = lambda p: 0.5 * WD * optax.tree.vdot(p, p)
  full = lambda p, b: data_loss(p, b) + penalty(p)
  steps = {}
  for in_loss in (True, False):
    method = OptimizerSettings("sgd", ETA, weight_decay=WD, decay_in_loss=in_loss)
    _, states = train(method, 1, rho=RHO)
    steps[in_loss] = states[1].params
  g_in = jax.grad(full)(w0, batch)
  eps_in = sam_steps.normalized(g_in, RHO)
  assert_trees_close(steps[True], optax.tree.add_scale(
      w0, -ETA, jax.grad(full)(optax.tree.add(w0, eps_in), batch)))
  g = jax.grad(data_loss)(w0, batch)
  eps = sam_steps.normalized(g, RHO)
  direction = optax.tree.add_scale(jax.grad(data_loss)(optax.tree.add(w0, eps), batch), WD, w0)
  assert_trees_close(steps[False], optax.tree.add_scale(w0, -ETA, direction))
  cos = optax.tree.vdot(eps_in, eps) / (optax.tree.norm(eps_in) * optax.tree.norm(eps))
  assert cos < 1 - 1e-4                       # the two forms perturb along different directions


def test_the_mask_leaves_norms_and_biases_undecayed_in_both_forms(x64):
  """--no_weight_decay_on_norm: only the kernel (rank 2) is decayed; the normalisation leaves
  are those SAM-ON finds."""
  w = tiny_params()
  mask = regularization.decay_mask(w, True)
  assert mask == {"Dense_0": {"kernel": True, "bias": False},
                  "LayerNorm_0": {"scale": False, "bias": False}}
  norm = normalization.mask(w)
  assert all(not m for m, n in zip(jax.tree.leaves(mask), jax.tree.leaves(norm)) if n)
  zero = jax.tree.map(jnp.zeros_like, w)
  opt = OptimizerSettings("sgd", ETA, weight_decay=WD, exempt_norm=True).make()
  updates, _ = opt.update(zero, opt.init(w), w)
  np.testing.assert_allclose(updates["Dense_0"]["kernel"], -ETA * WD * w["Dense_0"]["kernel"],
                             rtol=1e-15)
  for leaf in (updates["Dense_0"]["bias"], *updates["LayerNorm_0"].values()):
    np.testing.assert_array_equal(leaf, 0.0)
  penalty = OptimizerSettings("sgd", ETA, weight_decay=WD, decay_in_loss=True,
                              exempt_norm=True).penalty()
  np.testing.assert_allclose(penalty(w), 0.5 * WD * jnp.sum(w["Dense_0"]["kernel"] ** 2),
                             rtol=1e-15)
  haiku = {"linear": {"w": jnp.ones((2, 2)), "b": jnp.ones(2)},
           "layer_norm": {"scale": jnp.ones((2, 2)), "offset": jnp.ones(2)}}
  assert regularization.decay_mask(haiku, True) == {
      "linear": {"w": True, "b": False}, "layer_norm": {"scale": False, "offset": False}}
  assert regularization.decay_mask(jax.eval_shape(lambda: haiku), True) == \
      regularization.decay_mask(haiku, True)
  assert all(jax.tree.leaves(regularization.decay_mask(haiku, False)))


@pytest.mark.parametrize("exempt_norm", [False, True])
def test_l2_in_the_loss_shifts_the_measured_hessian_by_lambda(x64, exempt_norm):
  """A linear model (H = the same everywhere): the measured λ1 is that of H + λ diag(M), so
  without the mask it gains exactly λ; the Gauss–Newton product gains λ M⊙v."""
  rng = np.random.default_rng(1)
  batch = {"x": rng.normal(size=(8, 3)), "y": rng.normal(size=(8, 1))}
  params = {"Dense_0": {"kernel": jnp.asarray(rng.normal(size=(3, 1))), "bias": jnp.zeros(1)}}
  lin = lambda p, s, b, c, dtype: (b["x"] @ p["Dense_0"]["kernel"] + p["Dense_0"]["bias"], s)
  mse = lambda out, b: 0.5 * jnp.mean((out - b["y"]) ** 2)
  hessian = np.column_stack([batch["x"], np.ones(8)]).T @ np.column_stack([batch["x"],
                                                                           np.ones(8)]) / 8
  mask = np.array([0.0, 1.0, 1.0, 1.0] if exempt_norm else [1.0] * 4)   # raveled: bias first
  decayed = np.diag(np.roll(mask, -1))                                   # kernel first, as H
  v = jnp.arange(1.0, 5.0)
  top, gv = {}, {}
  for in_loss in (False, True):
    settings = measure.MeasureSettings(
        method=Method(OptimizerSettings("sgd", ETA, weight_decay=WD, decay_in_loss=in_loss,
                                        exempt_norm=exempt_norm)), max_steps=4, tol=1e-10)
    context = measure.Context({}, (), jnp.zeros([], jnp.int32), {})
    record, _ = measure.measure(lin, mse, settings, params, context, batch,
                                measure.init_state(settings, params), jax.random.PRNGKey(0))
    top[in_loss] = float(record["eigenvalues"][0])
    objective = measure.objective(lin, mse, settings, context)
    gv[in_loss] = np.asarray(gauss_newton.gauss_newton_matvec(objective, params, batch)(v))
  assert top[False] == pytest.approx(np.linalg.eigvalsh(hessian)[-1], rel=1e-12)
  assert top[True] == pytest.approx(np.linalg.eigvalsh(hessian + WD * decayed)[-1],
                                    rel=1e-12)
  if not exempt_norm:
    assert top[True] - top[False] == pytest.approx(WD, rel=1e-9)
  np.testing.assert_allclose(gv[True] - gv[False], WD * mask * np.asarray(v), rtol=1e-12,
                             atol=1e-14)


def test_edges_with_the_decay_in_the_loss_or_masked():
  """In the loss the method is the base optimizer on L + R: its edge has no − wd; the decay in
  the optimizer with the mask shifts some curvatures only: no closed form."""
  sam = SamSettings()
  in_loss = OptimizerSettings("momentum", ETA, weight_decay=WD, decay_in_loss=True)
  plain = OptimizerSettings("momentum", ETA)
  assert float(edges.method_edge(in_loss, sam, ETA)) == float(edges.method_edge(plain, sam, ETA))
  assert edges.edge_label(in_loss, sam) == edges.edge_label(plain, sam)
  masked = OptimizerSettings("momentum", ETA, weight_decay=WD, exempt_norm=True)
  assert edges.method_edge(masked, sam, ETA) is None
  assert edges.method_edge(OptimizerSettings("adam", ETA, weight_decay=WD, decay_in_loss=True),
                           sam, ETA) is not None


@pytest.mark.parametrize("kwargs, flag", [
    (dict(clip=0.0), "--clip_grad_norm"), (dict(clip=-1.0), "--clip_grad_norm"),
    (dict(decay_in_loss=True), "--weight_decay_in_loss"),
    (dict(exempt_norm=True), "--no_weight_decay_on_norm")])
def test_bad_settings_name_their_flag(kwargs, flag):
  bad = OptimizerSettings("sgd", ETA, **kwargs)
  assert len(bad.problems()) == 1 and flag in bad.problems()[0]
  with pytest.raises(ValueError, match=flag):         # the optimizer refuses to be made
    bad.make()


def test_titles_name_the_knobs_that_are_set():
  import image_classification as ic
  from sam_edge.cli import config
  from sam_edge.cli import main as cli
  title = lambda: config.of_flags(ic.TASK, ic.FLAGS).run.title.split(", ", 1)[1]
  cli.parse_flags(ic.FLAGS, [ic.PROG, "--rho=0.1", "--step_size=0.1"])
  assert title() == "SAM ρ=0.1, η=0.1"
  cli.parse_flags(ic.FLAGS, [ic.PROG, "--rho=0.1", "--step_size=0.1", "--weight_decay=0.001",
                             "--weight_decay_in_loss", "--no_weight_decay_on_norm",
                             "--clip_grad_norm=5", "--ema_decay=0.999"])
  assert title() == ("SAM ρ=0.1, η=0.1, wd=0.001 in the loss, no decay on norms/biases, clip 5, "
                     "EMA 0.999")
  values = config.flag_values(ic.FLAGS)
  assert {k: values[k] for k in ("weight_decay_in_loss", "no_weight_decay_on_norm",
                                 "clip_grad_norm", "ema_decay")} == {
      "weight_decay_in_loss": True, "no_weight_decay_on_norm": True, "clip_grad_norm": 5.0,
      "ema_decay": 0.999}
  run = config.of_flags(ic.TASK, ic.FLAGS).run
  assert run.ema_decay == 0.999 and run.method.optimizer.clip == 5.0
  assert run.method.optimizer.exempt_norm
  cli.parse_flags(ic.FLAGS, [ic.PROG, "--ema_decay=0"])
  assert config.of_flags(ic.TASK, ic.FLAGS).run.ema_decay is None
