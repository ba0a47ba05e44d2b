"""One measurement -> one record; compiled once per problem shape."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from sam_edge import edges, losses, measure

KEYS = ("eigenvalues", "residuals", "hvps", "two_over_eta", "sam_edge", "grad_norm", "loss",
        "g_alignment", "sg_alignment")


def problem(seed):
  rng = np.random.default_rng(seed)
  params = {"w1": jnp.asarray(rng.normal(size=(8, 16)), jnp.float32) / 3,
            "w2": jnp.asarray(rng.normal(size=(16, 4)), jnp.float32) / 4}
  batch = {"x": jnp.asarray(rng.normal(size=(32, 8)), jnp.float32),
           "y": jnp.asarray(rng.integers(0, 4, 32), jnp.int32)}
  return params, batch


TRACES = []


def loss_fn(params, batch):
  TRACES.append(1)                       # Python side effect: runs only while tracing
  logits = jax.nn.relu(batch["x"] @ params["w1"]) @ params["w2"]
  return losses.squared_error(logits, batch["y"])


@pytest.mark.parametrize("rho, k", [(0.0, 1), (0.1, 3)])
def test_record_fields(rho, k):
  settings = measure.MeasureSettings(step_size=0.05, rho=rho, num_eigenvalues=k, max_steps=30)
  run = measure.make_measure(loss_fn, settings)
  params, batch = problem(0)
  zeros = jax.tree.map(jnp.zeros_like, params)
  record, v1 = run(params, batch, zeros, jax.random.PRNGKey(0))
  assert set(record) == set(KEYS)
  assert record["eigenvalues"].shape == (k,) and record["residuals"].shape == (k,)
  assert np.all(np.diff(np.asarray(record["eigenvalues"])) <= 0)
  assert float(record["two_over_eta"]) == pytest.approx(40.0)
  expected_edge = edges.sam_edge(record["grad_norm"], 0.05, rho)
  assert float(record["sam_edge"]) == pytest.approx(float(expected_edge))
  for name in ("g_alignment", "sg_alignment"):
    assert 0.0 <= float(record[name]) <= 1.0
  if rho == 0:
    assert float(record["g_alignment"]) == float(record["sg_alignment"])
  assert float(record["residuals"][0]) <= 1e-4 * abs(float(record["eigenvalues"][0])) * 1.01
  assert jax.tree.structure(v1) == jax.tree.structure(params)


def test_second_measurement_does_not_retrace_or_recompile():
  settings = measure.MeasureSettings(step_size=0.1, rho=0.05, num_eigenvalues=2, max_steps=20)
  run = measure.make_measure(loss_fn, settings)
  params, batch = problem(1)
  record, v1 = run(params, batch, jax.tree.map(jnp.zeros_like, params), jax.random.PRNGKey(0))
  traces = len(TRACES)
  assert traces > 0
  new_params, new_batch = problem(2)     # new parameters, new batch, warm start, new key
  with jax.log_compiles(True):
    record2, _ = run(new_params, new_batch, v1, jax.random.PRNGKey(1))
  assert len(TRACES) == traces
  assert not np.array_equal(np.asarray(record["loss"]), np.asarray(record2["loss"]))


def test_measurement_does_not_change_its_inputs():
  settings = measure.MeasureSettings(step_size=0.1, rho=0.1)
  params, batch = problem(3)
  before = jax.tree.map(np.array, params)
  measure.make_measure(loss_fn, settings)(params, batch, jax.tree.map(jnp.zeros_like, params),
                                          jax.random.PRNGKey(0))
  jax.tree.map(np.testing.assert_array_equal, before, jax.tree.map(np.asarray, params))
