"""The central flow (`sam_edge.flows`, `python -m sam_edge.central_flow`): against closed forms
on a quadratic and on a two-parameter problem with a known cubic term, ∇S against a finite
difference of λ1, the complementarity solver's conditions, bad input, and one run end to end."""

import pickle
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from sam_edge import central_flow, records
from sam_edge.cli import main as cli
from sam_edge.flows import complementarity, substep, summary, trajectory
from sam_edge.tasks.image_task import TASK
from tests.helpers import REPO, symmetric_with_spectrum

pytestmark = pytest.mark.usefixtures("x64")

EIGEN = substep.Eigen(max_steps=20, tol=1e-10)


def quadratic(w, a):
  return 0.5 * w @ a @ w


def test_on_a_quadratic_the_flow_is_gradient_flow_and_predicts_the_loss():
  a = jnp.asarray(symmetric_with_spectrum([1.5, 1.0, 0.5, 0.2, 0.1]))
  s = trajectory.Settings(step_size=1.0, steps=6, substeps=4, critical=2, eigen=EIGEN)
  curves = trajectory.run(quadratic, jnp.arange(1.0, 6.0), a, s, jax.random.PRNGKey(0),
                          log=lambda line: None)
  assert np.all(curves["flow_sigma"] == 0)
  np.testing.assert_allclose(curves["flow_outsider_eigenvalue"], 0.5, rtol=1e-9)   # λ_3, dense
  np.testing.assert_allclose(curves["flow_loss"], curves["gradient_flow_loss"], rtol=1e-12)
  w, substep_losses = np.arange(1.0, 6.0), []          # gradient flow's Euler substeps by hand
  for _ in range(6 * 4):
    substep_losses.append(0.5 * w @ np.asarray(a) @ w)
    w = w - 0.25 * 1.0 * np.asarray(a) @ w
  by_step = np.asarray(substep_losses).reshape(6, 4)
  np.testing.assert_allclose(curves["flow_loss"], by_step[:, 0], rtol=1e-12)
  # the prediction is the loss itself (Σ = 0), averaged over the step's substeps
  np.testing.assert_allclose(curves["flow_predicted_loss"], by_step.mean(axis=1), rtol=1e-12)
  np.testing.assert_allclose(curves["flow_eigenvalues"], np.tile([1.5, 1.0], (6, 1)), rtol=1e-8)
  assert curves["gradient_flow_loss"][-1] < curves["gradient_flow_loss"][0]


# L(x, y) = ½ (h + c y) x² + b y: on x = 0, H = diag(h + c y, 0), so S = h + c y, ∇S = (0, c),
# ∇L = (0, b) and σ² = −2⟨∇S, ∇L⟩/‖∇S‖² = −2b/c on the edge h + c y = 2/η.
H, C, B, ETA = 2.0, 0.5, -0.25, 1.0


def cubic(w, _):
  x, y = w
  return 0.5 * (H + C * y) * x ** 2 + B * y


@pytest.mark.parametrize("k", [1, 2])
def test_sigma_squared_matches_the_closed_form_and_holds_the_flow_on_the_edge(k):
  w = jnp.array([0.0, 0.0])                               # S = h = 2/η
  vectors = jnp.eye(2)[:k]
  new_w, _, point = substep.central_substep(cubic, w, vectors, None, jax.random.PRNGKey(0),
                                            step_size=ETA, dt=0.25, eigen=EIGEN)
  expected = np.zeros((k, k))
  expected[0, 0] = -2 * B / C
  np.testing.assert_allclose(point.sigma, expected, atol=1e-6)
  np.testing.assert_allclose(point.eigenvalues[0], 2 / ETA, rtol=1e-12)
  np.testing.assert_allclose(new_w, w, atol=1e-6)         # dy/dt = −η(b + ½σ²c) = 0
  np.testing.assert_allclose(point.predicted_loss, 0.5 * (-2 * B / C) * (2 / ETA), rtol=1e-6)


def test_a_sharpness_above_the_edge_is_brought_back_to_it_in_one_substep():
  w = jnp.array([0.0, 0.3])                               # S = h + 0.3c > 2/η
  new_w, _, point = substep.central_substep(cubic, w, jnp.eye(2)[:1], None,
                                            jax.random.PRNGKey(0), step_size=ETA, dt=0.25,
                                            eigen=EIGEN)
  assert float(point.sigma[0, 0]) > 0
  np.testing.assert_allclose(H + C * new_w[1], 2 / ETA, rtol=1e-12)   # S is linear in y


def test_below_the_edge_sigma_is_zero_and_the_flow_is_gradient_flow():
  w = jnp.array([0.1, -0.5])                              # S ≈ h − 0.25 < 2/η
  new_w, _, point = substep.central_substep(cubic, w, jnp.eye(2)[:1], None,
                                            jax.random.PRNGKey(0), step_size=ETA, dt=0.25,
                                            eigen=EIGEN)
  assert float(point.sigma[0, 0]) == 0
  np.testing.assert_allclose(new_w, w - 0.25 * ETA * jax.grad(cubic)(w, None), rtol=1e-12)


def tiny_net(w, batch):
  x, y = batch
  w1, w2 = w[:12].reshape(3, 4), w[12:].reshape(4, 2)
  return 0.5 * jnp.mean((jnp.tanh(x @ w1) @ w2 - y) ** 2)


def test_curvature_gradients_match_finite_differences_of_the_hessian():
  keys = jax.random.split(jax.random.PRNGKey(1), 4)
  batch = (jax.random.normal(keys[0], (7, 3)), jax.random.normal(keys[1], (7, 2)))
  w = jax.random.normal(keys[2], (20,))
  e = jax.random.normal(keys[3], (20,))
  hessian = lambda p: jax.hessian(tiny_net)(p, batch)
  values, vectors = jnp.linalg.eigh(hessian(w))
  u = vectors[:, ::-1][:, :2].T                           # top two, as rows
  d_h = substep.curvature_gradients(tiny_net, w, batch, u)
  h = 1e-5
  top = lambda p: jnp.linalg.eigvalsh(hessian(p))[-1]
  assert values[-1] - values[-2] > 1e-3                   # λ1 simple: differentiable
  np.testing.assert_allclose(d_h[0, 0] @ e, (top(w + h * e) - top(w - h * e)) / (2 * h),
                             rtol=1e-6)
  bilinear = lambda p: u[0] @ hessian(p) @ u[1]
  np.testing.assert_allclose(d_h[0, 1] @ e, (bilinear(w + h * e) - bilinear(w - h * e)) / (2 * h),
                             rtol=1e-6, atol=1e-10)
  np.testing.assert_allclose(d_h[0, 1], d_h[1, 0])


@pytest.mark.parametrize("seed", range(4))
def test_the_complementarity_solution_keeps_every_critical_eigenvalue_at_most_the_edge(seed):
  rng = np.random.default_rng(seed)
  k, n = 3, 6
  grads = rng.normal(size=(k, k, n))
  grads = 0.5 * (grads + grads.transpose(1, 0, 2))        # ∇H_ij is symmetric in (i, j)
  gram = np.einsum("ijn,kln->ijkl", grads, grads)
  drift = np.einsum("ijn,n->ij", grads, rng.normal(size=n))
  eigenvalues = 2.0 + rng.normal(scale=0.05, size=k)      # some above the edge 2/η = 2
  alpha, beta = complementarity.coefficients(jnp.asarray(eigenvalues), jnp.asarray(gram),
                                             jnp.asarray(drift), 1.0, 0.25)
  sigma = np.asarray(complementarity.solve(alpha, beta))
  after = np.asarray(alpha + complementarity.apply(beta, jnp.asarray(sigma)))  # 2/η I − UᵀHU
  assert np.linalg.eigvalsh(sigma).min() > -1e-9          # Σ ⪰ 0
  assert np.linalg.eigvalsh(after).min() > -1e-6          # each eigenvalue at most 2/η
  assert np.trace(sigma) > 0
  np.testing.assert_allclose(after @ sigma, 0, atol=1e-6)  # equality where Σ oscillates
  assert np.all(np.asarray(complementarity.solve(alpha + 10 * jnp.eye(k), beta)) == 0)


def test_the_running_average_and_the_edge_phase():
  np.testing.assert_allclose(summary.running_average(np.arange(6.0), 3),
                             [np.nan, 1, 2, 3, 4, np.nan])
  assert summary.edge_start(np.array([2.5, 1.0, 1.5, 2.1, 1.9]), 2.0) == 3
  assert summary.edge_start(np.array([1.0, 1.5]), 2.0) is None
  # the settled phase: from where λ1 stays within 5% of 2/η to the end (a catapult excluded)
  lam = np.array([1.5, 2.0, 2.3, 1.7, 2.05, 1.98, 2.04, 2.0])
  assert summary.settles(lam, 2.0, 1) == 4
  assert summary.settles(lam, 2.0, 1, tolerance=0.2) == 1
  assert summary.settles(np.array([2.0, 2.0, 2.5]), 2.0, 0) is None
  assert summary.settles(np.array([2.0, 2.0, np.nan]), 2.0, 0) is None   # a NaN is not settled
  curves = {"gd_lambda1": np.concatenate([np.full(10, 1.5), lam, np.full(20, 2.01)])}
  n = len(curves["gd_lambda1"])
  curves.update(gd_loss=np.ones(n), flow_predicted_loss=np.full(n, 1.02),
                flow_sigma=np.zeros((n, 1, 1)), flow_eigenvalues=np.full((n, 1), 2.0),
                gd_displacement=np.ones(n), distance_flow=np.zeros(n),
                distance_gradient_flow=np.zeros(n), flow_outsider_eigenvalue=np.full(n, 1.9))
  m = summary.metrics(curves, 1.0, window=4)
  assert (m["eos_start"], m["settled_start"]) == (11, 14 + 2)
  assert m["loss_relative_error"] == pytest.approx(0.02)
  assert (m["outsider_edge_start"], m["outsider_edge_steps"]) == (None, 0)
  assert not any("raise --critical_eigenvalues" in line for line in summary.table(m, 1.0))
  curves["flow_outsider_eigenvalue"][[20, 25]] = [1.999, 2.01]     # within 0.1% of 2/η, above
  m = summary.metrics(curves, 1.0, window=4)
  assert (m["outsider_edge_start"], m["outsider_edge_steps"]) == (20, 2)
  assert "at 2 steps from step 20" in summary.table(m, 1.0)[-1]


def cycling_run(n: int = 600, period: float = 70.0, onset: int = 100) -> dict:
  """GD curves at the edge from `onset`: a smooth decay the flow predicts exactly, with GD's
  loss swinging ±4% about it in cycles of `period` steps and ±10% from step to step."""
  t = np.arange(n, dtype=np.float64)
  trend = 0.02 * np.exp(-t / 400)
  swing = 1 + 0.04 * np.sin(2 * np.pi * t / period) + 0.1 * (-1.0) ** t
  lam = np.where(t < onset, 1.5, 2.03 + 0.02 * np.sin(2 * np.pi * t / period))
  return dict(gd_lambda1=lam, gd_loss=trend * swing, flow_predicted_loss=trend,
              flow_sigma=np.zeros((n, 1, 1)), flow_eigenvalues=np.full((n, 1), 2.0),
              flow_outsider_eigenvalue=np.full(n, 1.9), gd_displacement=1 + t,
              distance_flow=np.zeros(n), distance_gradient_flow=np.zeros(n), step=t)


@pytest.mark.parametrize("period", [37.0, 70.0, 111.0])
def test_the_running_average_spans_one_measured_cycle_of_gds_loss(period):
  curves = cycling_run(period=period)
  assert summary.cycle_period(curves["gd_loss"], 100) == pytest.approx(period, rel=0.03)
  m = summary.metrics(curves, 1.0)                                  # window 0: one cycle
  assert m["window"] == max(20, round(m["cycle_period"]))
  assert m["settled_start"] == 100 + m["window"] // 2
  assert m["loss_relative_error"] < 0.01          # the flow's trend is GD's time-average
  if period > 40:
    # a 20-step boxcar keeps sin(20π/P)/(20π/P) of the swing: no time-average of it
    assert summary.metrics(curves, 1.0, window=20)["loss_relative_error"] > 0.025
  assert "one cycle of its loss" in summary.table(m, 1.0)[1]
  flat = {**curves, "gd_loss": curves["flow_predicted_loss"] * (1 + 0.1 * (-1.0) ** curves["step"])}
  assert summary.cycle_period(flat["gd_loss"], 100) is None
  assert summary.metrics(flat, 1.0)["window"] == 20     # no slow cycle: the 20-step default
  assert summary.cycle_period(curves["gd_loss"], 530) is None       # too few steps left
  fixed = summary.metrics(curves, 1.0, window=30)                   # a fixed window: still told
  assert fixed["window"] == 30 and fixed["cycle_period"] == m["cycle_period"]
  assert "fixed; its loss cycles with a period" in summary.table(fixed, 1.0)[1]
  assert m["loss_phase_mean_relative_error"] < 0.01                 # no window needed


def test_a_cycle_too_long_to_repeat_or_too_small_is_no_cycle():
  long = cycling_run(period=200.0)                  # fewer than four cycles in ~500 steps
  assert summary.cycle_period(long["gd_loss"], 100) is None
  tiny = cycling_run()
  t = tiny["step"]
  tiny["gd_loss"] = tiny["flow_predicted_loss"] * (1 + 2e-4 * np.sin(2 * np.pi * t / 70))
  assert summary.cycle_period(tiny["gd_loss"], 100) is None         # moves the loss < 0.1%
  gap = cycling_run()
  gap["gd_loss"][450] = np.nan                      # the first finite stretch: 100 .. ~440
  assert summary.cycle_period(gap["gd_loss"], 100) == pytest.approx(70, rel=0.05)


def test_the_import_and_help_load_no_jax():
  code = ("import sys\nfrom sam_edge import central_flow\n"
          "assert 'jax' not in sys.modules, 'jax'\n"
          "try:\n  central_flow.main(['--help'])\nexcept SystemExit as e:\n  assert e.code == 0\n"
          "assert 'jax' not in sys.modules, 'jax after --help'\n")
  done = subprocess.run([sys.executable, "-c", code], cwd=REPO, timeout=60, capture_output=True,
                        text=True)
  assert done.returncode == 0 and "--critical_eigenvalues" in done.stdout, done.stderr[-2000:]


def run_folder(tmp_path, config: dict, final: dict):
  folder = tmp_path / "run"
  folder.mkdir(parents=True)
  checksum = {records.RECORDS_SHA256: records.records_sha256([], {})} if final else {}
  raw = {"config": config, "records": [], "losses": {}, "final": {**final, **checksum}}
  records.write_raw(str(folder / "raw.pkl"), raw)
  return folder


@pytest.mark.parametrize("args, message", [
    (["--rho=0.1"], "--rho=0.1"),
    (["--optimizer=adam"], "--optimizer=adam"),
    (["--substeps=0"], "--substeps must be at least 1"),
    (["--critical_eigenvalues=0"], "--critical_eigenvalues must be at least 1"),
    (["--average_window=-1"], "--average_window must be 0"),
    (["--batch_size=100"], "full-batch GD"),
    (["--max_steps=0"], "give --max_steps"),
    (["--out={file}/out"], "is not a folder"),
    (["/no/such/run"], "run folder /no/such/run does not exist"),
])
def test_bad_input_is_one_line_and_exit_code_2(args, message, tmp_path, capsys):
  (tmp_path / "file").write_text("")
  args = [a.format(file=tmp_path / "file") for a in args]
  base = ["--mini_training_set_num_batches=1", "--batch_size=10", "--max_steps=3",
          f"--out={tmp_path / 'out'}"]
  if args == ["--batch_size=100"]:
    base = base[2:]
  assert central_flow.main(base + args) == 2
  err = capsys.readouterr().err.strip().splitlines()
  assert len(err) == 1 and err[0].startswith("central_flow: error:") and message in err[0], err


def test_a_run_folder_supplies_the_flags_and_must_be_a_finished_gd_run(tmp_path, capsys):
  unfinished = run_folder(tmp_path, {"rho": 0.0}, {})
  assert central_flow.main([str(unfinished), f"--out={tmp_path / 'out'}"]) == 2
  assert "has not finished" in capsys.readouterr().err
  sam = run_folder(tmp_path / "sam", {"rho": 0.05, "max_steps": 3, "batch_size": 10,
                                      "mini_training_set_num_batches": 1}, {"steps": 3})
  assert central_flow.main([str(sam), f"--out={tmp_path / 'out'}"]) == 2
  err = capsys.readouterr().err.strip().splitlines()
  assert len(err) == 1 and "--rho=0.05" in err[0]          # read from the run's config


def test_a_run_folders_config_counts_as_given():
  fv = cli.task_flags(TASK)
  central_flow.define_flags(fv)
  fv(["central_flow", "--max_steps=5"])
  central_flow.apply_config(fv, {"batch_size": 10, "mini_training_set_num_batches": 1,
                                 "max_steps": 3, "activation": "tanh"})
  central_flow.problems(fv)                      # resolves the task's defaults
  assert (fv.batch_size, fv.max_steps, fv.activation) == (10, 5, "tanh")


@pytest.mark.slow         # compiles three small flows
def test_end_to_end_on_mnist_writes_the_pdf_and_the_pickle(real_tfds, tmp_path, capsys):
  out = tmp_path / "out"
  code = central_flow.main([
      f"--tfds_data_dir={real_tfds}", "--activation=tanh", "--mlp_depth=2",
      "--mlp_width=8", "--batch_size=50", "--mini_training_set_num_batches=1",
      "--mini_test_set_num_batches=1", "--step_size=2.0", "--max_steps=4",
      "--critical_eigenvalues=2", "--lanczos_max_steps=10", f"--out={out}"])
  assert code == 0, capsys.readouterr().err[-3000:]
  assert "distance_ratio" in capsys.readouterr().out
  assert (out / "central_flow.pdf").read_bytes().startswith(b"%PDF")
  with open(out / "central_flow.pkl", "rb") as f:
    raw = pickle.load(f)
  assert records.raw_status(raw)[0] and raw["final"][records.RECORDS_SHA256]
  curves = raw["losses"]
  for key in ("gd_loss", "gd_lambda1", "flow_predicted_loss", "flow_eigenvalues", "flow_sigma",
              "flow_outsider_eigenvalue", "gradient_flow_loss", "distance_flow",
              "distance_gradient_flow", "gd_displacement"):
    assert len(curves[key]) == 4, key
  assert np.asarray(curves["flow_sigma"]).shape == (4, 2, 2)
  assert raw["config"]["step_size"] == 2.0 and raw["config"]["substeps"] == 4
  for key in ("loss_relative_error", "sharpness_relative_error", "distance_ratio",
              "gradient_flow_distance_ratio", "seconds_per_step"):
    assert key in raw["final"]


def test_block_eigenpairs_find_near_degenerate_critical_eigenvalues_from_a_warm_block():
  """LOBPCG (n > 5k) from a random block, then warm-started from its own vectors: the top three
  of a spectrum 2, 1.99, 1.985, ... to 1e-5, the warm solve within its budget of 30 HVPs."""
  n = 60
  spectrum = np.concatenate([[2.0, 1.99, 1.985], np.linspace(1.5, -0.5, n - 3)])
  a = jnp.asarray(symmetric_with_spectrum(spectrum), jnp.float32)
  w = jnp.zeros(n, jnp.float32)
  cold = substep.block_eigenpairs(quadratic, w, a, jnp.zeros((3, n)), jax.random.PRNGKey(0),
                                  substep.Eigen(300, 1e-5))
  np.testing.assert_allclose(cold.eigenvalues, spectrum[:3], atol=2e-5)
  warm = substep.block_eigenpairs(quadratic, w, a, cold.vectors + 1e-3, jax.random.PRNGKey(1),
                                  substep.Eigen(30, 1e-5))
  np.testing.assert_allclose(warm.eigenvalues, spectrum[:3], atol=2e-5)
  assert int(warm.num_matvecs) <= 30
  residuals = np.asarray(a) @ np.asarray(warm.vectors).T - np.asarray(warm.vectors).T * spectrum[:3]
  assert np.max(np.linalg.norm(residuals, axis=0)) < 1e-3


def test_refresh_block_brings_in_a_direction_the_warm_block_cannot_see():
  """A block that is exactly invariant but holds λ_2..λ_4 (the top direction rose past it from
  outside): LOBPCG from it stays there; the refresh's deflated Lanczos finds λ_1 and puts it in
  the block, with the fourth as the outsider."""
  n = 60
  spectrum = np.concatenate([[2.01, 2.0, 1.999, 1.998], np.linspace(1.9, -0.5, n - 4)])
  a = jnp.asarray(symmetric_with_spectrum(spectrum), jnp.float32)
  vectors = np.linalg.eigh(np.asarray(a, np.float64))[1][:, ::-1].T        # rows, top first
  w, stale = jnp.zeros(n, jnp.float32), jnp.asarray(vectors[1:4], jnp.float32)
  eigen = substep.Eigen(30, 1e-5)
  stuck = substep.block_eigenpairs(quadratic, w, a, stale, jax.random.PRNGKey(0), eigen)
  np.testing.assert_allclose(stuck.eigenvalues, spectrum[1:4], atol=1e-4)
  block, outsider, outside, hvps = substep.refresh_block(quadratic, w, a, stale, jnp.zeros(n),
                                                         jax.random.PRNGKey(1), eigen)
  assert float(outside) == pytest.approx(spectrum[3], abs=1e-4)
  rayleigh = np.einsum("in,nm,im->i", np.asarray(block), np.asarray(a), np.asarray(block))
  np.testing.assert_allclose(rayleigh, spectrum[:3], atol=1e-4)
  assert abs(float(outsider @ a @ outsider) - spectrum[3]) < 1e-4
  assert 4 < int(hvps) <= substep.OUTSIDER_STEPS + 4
  found = substep.block_eigenpairs(quadratic, w, a, block, jax.random.PRNGKey(2), eigen)
  np.testing.assert_allclose(found.eigenvalues, spectrum[:3], atol=1e-4)
