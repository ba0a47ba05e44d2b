"""Batch sharpness (`--measure_batch_sharpness`) through the measurement that runs it
(`measure.make_measure` with the training set in its context), against closed forms and a
brute-force average over every batch, in float64; and end to end, with per-step tracking and
the self-stabilization terms, through the image entry point."""

import itertools
import pickle

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import image_classification as ic
from sam_edge.cli import main as cli
from sam_edge.curvature import measure
from sam_edge.curvature.kinds.batch_sharpness import BatchSharpnessSettings
from sam_edge.optim.method import Method
from sam_edge.optim.optimizers import OptimizerSettings


def forward(params, model_state, batch, constants, dtype=jnp.float32):
  """Per-example quadratics ℓ_i(w) = ½ wᵀ A_i w − b_iᵀ w (the outputs are the losses)."""
  w = params["w"]
  return 0.5 * jnp.einsum("i,nij,j->n", w, batch["a"], w) - batch["b"] @ w, model_state


def output_loss(outputs, batch):
  return jnp.mean(outputs)


def quadratic_set(n, d=5, seed=0, identical=False):
  rng = np.random.default_rng(seed)
  m = rng.normal(size=(1 if identical else n, d, d))
  a = np.einsum("nij,nkj->nik", m, m) / d + np.eye(d)
  b = rng.normal(size=(1 if identical else n, d))
  if identical:
    a, b = np.repeat(a, n, 0), np.repeat(b, n, 0)
  return {"a": jnp.asarray(a), "b": jnp.asarray(b)}, {"w": jnp.asarray(rng.normal(size=d))}


def measured(arrays, params, batch_size, batches, optimizer=OptimizerSettings(), opt_state=None):
  settings = measure.MeasureSettings(
      method=Method(optimizer), batch_size=batch_size, max_steps=5,
      curvature=(("batch_sharpness", BatchSharpnessSettings(
          batches=batches, momentum=optimizer.name in ("momentum", "nesterov"))),))
  run = measure.make_measure(forward, output_loss, settings)
  if opt_state is None:
    opt_state = optimizer.make().init(params)
  context = measure.Context({}, opt_state, jnp.int32(0), {}, arrays=arrays)
  record, _ = run(params, context, arrays, measure.init_state(settings, params),
                  jax.random.PRNGKey(0))
  return record


def batch_terms(arrays, params, rows):
  """(gᵀ H g, ||g||²) of the batch `rows`, in closed form."""
  a = np.asarray(arrays["a"])[list(rows)].mean(0)
  g = a @ np.asarray(params["w"]) - np.asarray(arrays["b"])[list(rows)].mean(0)
  return g @ a @ g, g @ g


pytestmark = pytest.mark.usefixtures("x64")


@pytest.mark.parametrize("batch_size", [4, 8])
def test_identical_batches_give_the_curvature_along_the_gradient(batch_size):
  """Every batch of a set of identical examples has g_B = Aw − b and H_B = A, so BS and its ratio
  variant are gᵀAg/||g||² exactly, with no spread (batch 8 = the full set: one batch)."""
  arrays, params = quadratic_set(8, identical=True)
  record = measured(arrays, params, batch_size, batches=5)
  g_hg, g_g = batch_terms(arrays, params, range(8))
  assert float(record["batch_sharpness"]) == pytest.approx(g_hg / g_g, rel=1e-12)
  assert float(record["batch_sharpness_ratio"]) == pytest.approx(g_hg / g_g, rel=1e-12)
  assert float(record["batch_sharpness_stderr"]) < 1e-12 * g_hg / g_g
  assert int(record["batch_sharpness_batches"]) == (1 if batch_size == 8 else 5)
  assert record["batch_sharpness_momentum"] is None


def test_matches_the_brute_force_average_over_every_batch():
  """n = 7 different quadratics, batches of 3: the 35 batches' exact average of gᵀHg/||g||² (and
  the ratio of their averages) against the measured estimate from 4,000 drawn batches, within
  4 of its own standard errors; the standard error itself is the batches' spread / √4000."""
  arrays, params = quadratic_set(7, seed=1)
  terms = np.array([batch_terms(arrays, params, rows)
                    for rows in itertools.combinations(range(7), 3)])
  each = terms[:, 0] / terms[:, 1]
  record = measured(arrays, params, 3, batches=4000)
  stderr = float(record["batch_sharpness_stderr"])
  assert stderr == pytest.approx(each.std() / np.sqrt(4000), rel=0.1)
  assert abs(float(record["batch_sharpness"]) - each.mean()) < 4 * stderr
  ratio = terms[:, 0].mean() / terms[:, 1].mean()
  assert abs(float(record["batch_sharpness_ratio"]) - ratio) < 4 * stderr


def test_momentum_variant_uses_the_step_heavy_ball_takes():
  """Heavy ball with a momentum buffer m: s = g + βm, and the record holds sᵀHs / sᵀg (full
  batch: one batch, the whole set)."""
  arrays, params = quadratic_set(6, seed=2)
  optimizer = OptimizerSettings(name="momentum", step_size=0.1, hyper={"momentum": 0.9})
  transformation = optimizer.make()
  buffer = {"w": jnp.asarray(np.random.default_rng(3).normal(size=5))}
  _, opt_state = transformation.update(buffer, transformation.init(params), params)
  record = measured(arrays, params, 6, batches=2, optimizer=optimizer, opt_state=opt_state)
  a = np.asarray(arrays["a"]).mean(0)
  g = a @ np.asarray(params["w"]) - np.asarray(arrays["b"]).mean(0)
  s = g + 0.9 * np.asarray(buffer["w"])
  assert float(record["batch_sharpness_momentum"]) == pytest.approx(s @ a @ s / (s @ g),
                                                                    rel=1e-10)
  assert float(record["batch_sharpness"]) == pytest.approx(g @ a @ g / (g @ g), rel=1e-10)
  assert float(optax.tree.norm(buffer)) > 0


def run_mnist(mock_mnist, tmp_path, name, *extra):
  raw = tmp_path / f"{name}.pkl"
  cli.parse_flags(ic.FLAGS, [ic.PROG, f"--tfds_data_dir={mock_mnist}", "--nn_architecture=MLP",
                             "--mlp_width=16", "--mlp_depth=2", "--max_steps=6",
                             "--measure_every_steps=3", "--lanczos_max_steps=40",
                             "--lanczos_tol=1e-6", f"--raw_data_output={raw}",
                             f"--eigs_curve_output={tmp_path / name}_eigs.pdf",
                             f"--tracking_curve_output={tmp_path / name}_tracking.pdf",
                             f"--curvature_output={tmp_path / name}_curvature.pdf",
                             "--eigs_se_only_output=", "--alignment_curve_output=",
                             "--loss_curve_output=", *extra])
  assert ic.main([]) == 0
  return pickle.loads(raw.read_bytes())


@pytest.mark.slow
def test_batch_sharpness_leaves_the_trajectory_alone_end_to_end(mock_mnist, tmp_path, capsys):
  """Mini-batch SGD (batch 8 of 24) with and without --measure_batch_sharpness: the same losses
  at every step; the records hold BS with its standard error, the line says it, and the
  eigenvalue figure draws it."""
  without = run_mnist(mock_mnist, tmp_path, "plain", "--batch_size=8")
  with_bs = run_mnist(mock_mnist, tmp_path, "bs", "--batch_size=8", "--measure_batch_sharpness",
                      "--batch_sharpness_batches=6", "--measure_self_stabilization")
  assert with_bs["losses"]["loss"] == without["losses"]["loss"]
  assert "batch sharpness" in capsys.readouterr().out
  for r in with_bs["records"]:
    assert int(r["batch_sharpness_batches"]) == 6 and r["batch_sharpness_stderr"] > 0
    assert r["batch_sharpness"] > 0 and r["sharpness_gradient_norm"] > 0
    assert r["self_stabilization"] == pytest.approx(r["sharpness_gradient_norm"] ** 2)
  assert (tmp_path / "bs_eigs.pdf").read_bytes().startswith(b"%PDF")
  assert (tmp_path / "bs_curvature.pdf").read_bytes().startswith(b"%PDF")


@pytest.mark.slow
def test_track_every_step_end_to_end(mock_mnist, tmp_path):
  """Full-batch SAM with --track_every_step: every step's λ1, residual and gradient curvature in
  `losses`; at the measured steps 2 and 4 the tracked λ1 (whose vector was last refreshed by
  the measurement two steps before) agrees with the measurement's Lanczos; the tracking figure
  is written."""
  raw = run_mnist(mock_mnist, tmp_path, "track", "--batch_size=24", "--rho=0.05",
                  "--track_every_step", "--track_hvps=4", "--measure_every_steps=2")
  losses = raw["losses"]
  assert losses["step"] == list(range(6))
  for key in ("lambda1_per_step", "lambda1_per_step_residual", "gradient_curvature"):
    assert len(losses[key]) == 6 and all(np.isfinite(losses[key]))
  for r in raw["records"][1:]:
    tracked = losses["lambda1_per_step"][losses["step"].index(r["step"])]
    assert tracked == pytest.approx(r["eigenvalues"][0], rel=1e-3)
  assert (tmp_path / "track_tracking.pdf").read_bytes().startswith(b"%PDF")
