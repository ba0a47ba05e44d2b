"""The Gauss–Newton kind against dense matrices (float64): G = Jᵀ H_ℓ J from `jax.jacobian` and
`jax.hessian`, and G = ∇²L for squared error on the linearized model."""

import pickle

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.flatten_util import ravel_pytree

import image_classification as ic
from sam_edge.cli import main as cli
from sam_edge.curvature import registry
from sam_edge.curvature.kind import Inputs
from sam_edge.curvature.kinds import gauss_newton
from sam_edge.curvature.objective import Objective
from sam_edge.models import linearize, losses
from tests.helpers import dense_hessian

KINDS = (("gauss_newton", gauss_newton.GaussNewtonSettings(max_steps=60, tol=1e-10)),)


def mlp_problem(seed=0, examples=12):
  """A 5-6-4 tanh MLP (64 parameters) and a batch of `examples`."""
  rng = np.random.default_rng(seed)
  params = {"Dense_0": {"kernel": jnp.asarray(rng.normal(size=(5, 6))),
                        "bias": jnp.asarray(rng.normal(size=6) * 0.1)},
            "Dense_1": {"kernel": jnp.asarray(rng.normal(size=(6, 4)) / 2),
                        "bias": jnp.zeros(4)}}
  batch = {"x": jnp.asarray(rng.normal(size=(examples, 5))),
           "y": jnp.asarray(rng.integers(0, 4, examples))}
  return params, batch


def mlp(params, x):
  h = jnp.tanh(x @ params["Dense_0"]["kernel"] + params["Dense_0"]["bias"])
  return h @ params["Dense_1"]["kernel"] + params["Dense_1"]["bias"]


def dense_gauss_newton(objective, params, batch):
  """Jᵀ H_ℓ J with J = ∂f/∂w [B·C, n] and H_ℓ = ∇²_f ℓ [B·C, B·C], formed densely."""
  flat, unravel = ravel_pytree(params)
  outputs = objective.forward(params, batch)
  jac = jax.jacobian(lambda w: objective.forward(unravel(w), batch).ravel())(flat)
  h_loss = jax.hessian(lambda o: objective.output_loss(o.reshape(outputs.shape), batch))(
      outputs.ravel())
  return np.asarray(jac.T @ h_loss @ jac)


def measured(objective, params, batch, key=0):
  states = registry.init_states(KINDS, params)
  record, states = jax.jit(lambda p, b, k, s: registry.measure_curvature(
      Inputs(objective, p, b), KINDS, k, s))(
      params, batch, jax.random.PRNGKey(key), states)
  return record, states


@pytest.mark.slow
@pytest.mark.parametrize("loss", [losses.squared_error, losses.cross_entropy])
@pytest.mark.usefixtures("x64")
def test_top_eigenvalue_of_a_dense_gauss_newton_matrix(loss):
  params, batch = mlp_problem()
  objective = Objective(lambda p, b: mlp(p, b["x"]), lambda o, b: loss(o, b["y"]))
  g = dense_gauss_newton(objective, params, batch)
  record, state = measured(objective, params, batch)
  top = np.linalg.eigvalsh(g)[-1]
  assert float(record["gauss_newton"]) == pytest.approx(top, rel=1e-8)
  assert float(record["gauss_newton_residual"]) <= 1e-8 * top
  assert 1 <= int(record["gauss_newton_hvps"]) <= 60
  y = np.asarray(state["gauss_newton"])
  np.testing.assert_allclose(g @ y, top * y, atol=1e-7 * top)     # the state is the eigenvector
  h = dense_hessian(objective.loss, params, batch)
  assert not np.allclose(g, h, atol=1e-3)                         # the network's curvature counts


@pytest.mark.slow
@pytest.mark.usefixtures("x64")
def test_on_the_linearized_model_gauss_newton_is_the_hessian():
  """f_lin is affine in w: ∇²L = Jᵀ H_ℓ J exactly, under squared error (and any loss)."""
  params0, batch = mlp_problem(1)
  params = jax.tree.map(lambda w: w + 0.3, params0)              # away from the expansion point
  objective = Objective(
      lambda p, b: linearize.linearized_apply(mlp, params0, p, b["x"]),
      lambda o, b: losses.squared_error(o, b["y"]))
  h = dense_hessian(objective.loss, params, batch)
  np.testing.assert_allclose(dense_gauss_newton(objective, params, batch), h, atol=1e-12)
  record, _ = measured(objective, params, batch)
  assert float(record["gauss_newton"]) == pytest.approx(np.linalg.eigvalsh(h)[-1], rel=1e-8)


@pytest.mark.usefixtures("x64")
def test_chunks_average_the_gauss_newton_matrices_as_the_loss_averages_the_losses():
  params, batch = mlp_problem(2, examples=12)
  whole = Objective(lambda p, b: mlp(p, b["x"]), lambda o, b: losses.squared_error(o, b["y"]))
  chunked = Objective(whole.forward, whole.output_loss, chunk=4)
  a, _ = measured(whole, params, batch)
  b, _ = measured(chunked, params, batch)
  assert float(a["gauss_newton"]) == pytest.approx(float(b["gauss_newton"]), rel=1e-9)


def test_the_kind_is_in_the_registry_with_its_flag_line_and_panel():
  kind = registry.BY_NAME["gauss_newton"]
  assert "measure_gauss_newton" in [o.name for o in registry.all_options()]
  record = {"step": 3, "eigenvalues": [2.0], "gauss_newton": 1.5, "gauss_newton_residual": 1e-6,
            "gauss_newton_hvps": 9}
  assert "λ1(G) 1.5" in registry.line(record)
  assert registry.scalars(record) == {"curvature/gauss_newton": 1.5}
  (panel,) = kind.panels([record], "t")
  assert [list(s.ys) for s in panel.series] == [[1.5], [2.0]]


@pytest.mark.slow
def test_measure_gauss_newton_end_to_end(mock_mnist, tmp_path, capsys):
  """`--measure_gauss_newton` through the entry point, on the linearized MLP under squared
  error, where G is the Hessian: the record's λ1(G) is the measurement's λ1, the line says it,
  and the curvature figure draws it."""
  raw, figure = tmp_path / "raw.pkl", tmp_path / "curvature.pdf"
  cli.parse_flags(ic.FLAGS, [ic.PROG, f"--tfds_data_dir={mock_mnist}", "--batch_size=8",
                             "--nn_architecture=MLP", "--mlp_width=16", "--mlp_depth=2",
                             "--regime=linearized", "--measure_gauss_newton", "--max_steps=2",
                             "--measure_every_steps=1", "--lanczos_max_steps=40",
                             "--lanczos_tol=1e-6", f"--raw_data_output={raw}",
                             f"--curvature_output={figure}", "--eigs_curve_output=",
                             "--eigs_se_only_output=", "--alignment_curve_output=",
                             "--loss_curve_output="])
  assert ic.main([]) == 0
  assert "λ1(G)" in capsys.readouterr().out
  records = pickle.loads(raw.read_bytes())["records"]
  assert len(records) == 2
  for r in records:
    assert {"gauss_newton", "gauss_newton_residual", "gauss_newton_hvps"} <= set(r)
    assert r["gauss_newton"] == pytest.approx(r["eigenvalues"][0], rel=1e-3)
  assert figure.read_bytes().startswith(b"%PDF")
