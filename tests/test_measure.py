"""One measurement -> one record; compiled once per problem shape."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.flatten_util import ravel_pytree

from sam_edge.curvature import measure
from sam_edge.models import losses
from sam_edge.optim import adam, oracle, thresholds, update
from sam_edge.optim.method import Method
from sam_edge.optim.optimizers import OptimizerSettings
from sam_edge.optim.sam import SamSettings

KEYS = ("eigenvalues", "residuals", "hvps", "two_over_eta", "sam_edge", "grad_norm", "loss",
        "g_alignment", "sg_alignment", "converged", "eigenvalue_kind", "operator", "edge",
        "edge_label", "step_size")


def problem(seed):
  rng = np.random.default_rng(seed)
  params = {"w1": jnp.asarray(rng.normal(size=(8, 16)), jnp.float32) / 3,
            "w2": jnp.asarray(rng.normal(size=(16, 4)), jnp.float32) / 4}
  batch = {"x": jnp.asarray(rng.normal(size=(32, 8)), jnp.float32),
           "y": jnp.asarray(rng.integers(0, 4, 32), jnp.int32)}
  return params, batch


TRACES = []


def forward(params, model_state, batch, constants, dtype=jnp.float32):
  TRACES.append(1)                       # Python side effect: runs only while tracing
  return jax.nn.relu(batch["x"] @ params["w1"]) @ params["w2"], model_state


def output_loss(logits, batch):
  return losses.squared_error(logits, batch["y"])


def scalar_loss(params, batch):
  return output_loss(forward(params, {}, batch, {})[0], batch)


def settings_for(name="sgd", rho=0.0, eta=0.05, k=1, **kw):
  return measure.MeasureSettings(
      method=Method(OptimizerSettings(name=name, step_size=eta), SamSettings(rho=rho)),
      batch_size=32, num_eigenvalues=k, **kw)


def context(optimizer, params, step=0):
  return measure.Context({}, optimizer.init(params), jnp.asarray(step, jnp.int32), {})


def measure_once(settings, params, batch, v0=None, key=0, step=0):
  run = measure.make_measure(forward, output_loss, settings)
  state = measure.init_state(settings, params) if v0 is None else {"v1": v0, "curvature": {}}
  return run(params, context(settings.method.optimizer.make(), params, step), batch, state,
             jax.random.PRNGKey(key))


@pytest.mark.parametrize("rho, k", [(0.0, 1), (0.1, 3)])
def test_record_fields(rho, k):
  settings = settings_for(rho=rho, k=k, max_steps=30)
  params, batch = problem(0)
  record, v1 = measure_once(settings, params, batch)
  assert set(record) == set(KEYS)
  assert record["eigenvalues"].shape == (k,) and record["residuals"].shape == (k,)
  assert np.all(np.diff(np.asarray(record["eigenvalues"])) <= 0)
  assert float(record["two_over_eta"]) == pytest.approx(40.0)
  assert float(record["step_size"]) == pytest.approx(0.05)
  expected_edge = thresholds.sam_edge(record["grad_norm"], 0.05, rho)
  assert float(record["sam_edge"]) == pytest.approx(float(expected_edge))
  assert float(record["edge"]) == pytest.approx(float(expected_edge))     # GD/SAM: the SAM-edge
  assert record["edge_label"] == ("2/η" if rho == 0 else "SAM-edge")
  assert record["operator"] == "hessian" and record["eigenvalue_kind"] == "signed"
  for name in ("g_alignment", "sg_alignment"):
    assert 0.0 <= float(record[name]) <= 1.0
  if rho == 0:
    assert float(record["g_alignment"]) == float(record["sg_alignment"])
  assert bool(record["converged"])
  assert float(record["residuals"][0]) <= 1e-4 * abs(float(record["eigenvalues"][0])) * 1.01
  assert jax.tree.structure(v1["v1"]) == jax.tree.structure(params)


def test_unconverged_is_said():
  """A Lanczos cut off after one step reports converged=False (its residual is large)."""
  settings = settings_for(max_steps=1, min_steps=1)
  params, batch = problem(0)
  record, _ = measure_once(settings, params, batch)
  assert not bool(record["converged"])
  assert float(record["residuals"][0]) > 1e-4 * abs(float(record["eigenvalues"][0]))


def test_power_iteration_says_magnitudes():
  record, _ = measure_once(settings_for(eigensolver="power"), *problem(0))
  assert record["eigenvalue_kind"] == "magnitude"


def test_momentum_edge_and_schedule_step_size():
  """The record's `edge` is the configured method's: (2+2β)/η with η of the current step."""
  schedule = OptimizerSettings(name="momentum", step_size=0.1, hyper={"momentum": 0.5},
                               schedule="step", total_steps=10, boundaries=(0.5,), factor=0.1)
  settings = measure.MeasureSettings(method=Method(schedule), batch_size=32)
  params, batch = problem(0)
  for step, eta in ((0, 0.1), (5, 0.01)):
    record, _ = measure_once(settings, params, batch, step=step)
    assert float(record["step_size"]) == pytest.approx(eta)
    assert float(record["edge"]) == pytest.approx(3.0 / eta)
    assert float(record["two_over_eta"]) == pytest.approx(2.0 / eta)
  assert record["edge_label"] == "(2+2β)/η, β=0.5"


@pytest.mark.slow
def test_adam_measures_the_preconditioned_hessian():
  """With Adam the eigenvalues are those of P^{-1/2} H P^{-1/2}, P the next step's
  preconditioner, checked against the dense matrix."""
  params, batch = problem(4)
  settings = settings_for(name="adam", eta=1e-3, k=2, max_steps=60, tol=1e-6)
  optimizer = settings.method.optimizer.make()
  state = update.init_state(params, optimizer)
  step = jax.jit(lambda state, batch: update.sam_update(
      lambda p, b: (scalar_loss(p, b), {}), optimizer, SamSettings(), state, batch))
  for _ in range(3):
    state, _ = step(state, batch)
  run = measure.make_measure(forward, output_loss, settings)
  ctx = measure.Context({}, state.opt_state, state.step, {})
  record, _ = run(state.params, ctx, batch, measure.init_state(settings, params),
                  jax.random.PRNGKey(0))
  assert record["operator"] == "preconditioned_hessian"
  flat, unravel = ravel_pytree(state.params)
  dense = jax.hessian(lambda w: scalar_loss(unravel(w), batch))(flat)
  grad = jax.grad(scalar_loss)(state.params, batch)
  p = ravel_pytree(adam.preconditioner_from_state(state.opt_state, grad, 0.999, 1e-8))[0]
  scaled = dense / jnp.sqrt(p)[:, None] / jnp.sqrt(p)[None, :]
  top = np.sort(np.linalg.eigvalsh(np.asarray(scaled, np.float64)))[::-1][:2]
  np.testing.assert_allclose(np.asarray(record["eigenvalues"]), top, rtol=1e-3)
  plain = np.linalg.eigvalsh(np.asarray(dense, np.float64))[-1]
  assert abs(top[0] - plain) > 0.1 * abs(plain)          # the preconditioning matters here
  assert float(record["edge"]) == pytest.approx(2 * 1.9 / 0.1 / 1e-3)


def test_second_measurement_does_not_retrace_or_recompile():
  settings = settings_for(rho=0.05, k=2, eta=0.1)
  run = measure.make_measure(forward, output_loss, settings)
  params, batch = problem(1)
  opt = settings.method.optimizer.make()
  record, next_state = run(params, context(opt, params), batch,
                           measure.init_state(settings, params), jax.random.PRNGKey(0))
  traces = len(TRACES)
  assert traces > 0
  new_params, new_batch = problem(2)     # new parameters, new batch, warm start, new key
  with jax.log_compiles(True):
    record2, _ = run(new_params, context(opt, new_params, 7), new_batch, next_state,
                     jax.random.PRNGKey(1))
  assert len(TRACES) == traces
  assert not np.array_equal(np.asarray(record["loss"]), np.asarray(record2["loss"]))


def test_measurement_does_not_change_its_inputs():
  params, batch = problem(3)
  before = jax.tree.map(np.array, params)
  measure_once(settings_for(rho=0.1, eta=0.1), params, batch)
  jax.tree.map(np.testing.assert_array_equal, before, jax.tree.map(np.asarray, params))


@pytest.mark.slow
@pytest.mark.parametrize("name, rho", [("sgd", 0.1), ("adam", 0.0)])
def test_host_driven_lanczos_equals_the_device_loop(name, rho, monkeypatch):
  """The CPU's host loop of jitted Lanczos steps (`oracle.host_loops`) computes what the one
  jitted function does."""
  settings = settings_for(name=name, rho=rho, eta=1e-3 if name == "adam" else 0.05, k=2,
                          max_steps=40, tol=1e-6)
  params, batch = problem(5)
  assert oracle.host_loops() == (jax.default_backend() == "cpu")
  monkeypatch.setattr(oracle, "host_loops", lambda *program: True)
  host, _ = measure_once(settings, params, batch)
  monkeypatch.setattr(oracle, "host_loops", lambda *program: False)
  device, _ = measure_once(settings, params, batch)
  assert host["hvps"] == device["hvps"]
  for key in ("eigenvalues", "residuals", "loss", "grad_norm", "g_alignment", "sg_alignment"):
    np.testing.assert_allclose(np.asarray(host[key]), np.asarray(device[key]), rtol=1e-5,
                               atol=1e-7, err_msg=key)


def test_only_convolutional_programs_loop_on_the_host():
  """`oracle.host_loops(program, *args)`: on the CPU, a program whose jaxpr holds a convolution,
  also inside a loop or a branch; a dense one keeps the device loop; other backends never."""
  x, w = jnp.ones((1, 4, 4, 1)), jnp.ones((3, 3, 1, 1))
  conv = lambda x, w: jax.lax.conv_general_dilated(x, w, (1, 1), "SAME",
                                                   dimension_numbers=("NHWC", "HWIO", "NHWC"))
  looped = lambda x, w: jax.lax.fori_loop(0, 2, lambda i, y: conv(y, w), x)
  branched = lambda x, w: jax.lax.cond(True, lambda: conv(x, w), lambda: x)
  cpu = jax.default_backend() == "cpu"
  for program in (conv, looped, branched):
    assert oracle.host_loops(program, x, w) == cpu
  assert not oracle.host_loops(lambda x, w: jnp.sum(x) * jnp.sum(w), x, w)
  assert oracle.host_loops() == cpu
