"""`python -m sam_edge.power_law`: bad input in one line, results.json's keys and best runs, the
figures' panels, and one end-to-end run on MNIST."""

import gzip
import json
import re
import subprocess
import sys

import numpy as np
import pytest

from sam_edge import power_law
from sam_edge.data import idx
from sam_edge.linear_sgd import conditions, figures, fits, problem, results, scan, settings
from sam_edge.linear_sgd.runs import Curve
from sam_edge.plots.spec import Heatmap
from tests import helpers
from tests.helpers import REPO

RUN_KEYS = {"regime", "tau", "batch_size", "step_size", "momentum", "final_loss", "converged",
            "exponent"}
SPECTRUM_KEYS = {"nu", "kappa", "predicted_exponent", "scale", "tail_scale"}


@pytest.fixture
def folders(tmp_path):
  """An empty MNIST folder, one with a truncated label file, and a plain file."""
  (tmp_path / "empty").mkdir()
  broken = tmp_path / "broken"
  broken.mkdir()
  for name in idx.MNIST_TRAIN:
    with gzip.open(broken / name, "wb") as f:
      f.write(b"\x00\x00\x99\x01")                     # an unknown type byte
  (tmp_path / "file").write_text("not a folder")
  return tmp_path


BAD = [  # (args, what the error line must name)
    ([], "--out=DIR is required"),
    (["--regimes=linearized,sgd"], "unknown regime 'sgd'"),
    (["--regimes="], "--regimes must list at least one"),
    (["--batch_sizes=0"], "--batch_sizes must list integers in [1, --num_examples=1000]"),
    (["--batch_sizes=1001"], "--batch_sizes"),
    (["--batch_sizes=2.5"], "--batch_sizes"),
    (["--step_sizes=-1"], "--step_sizes must list finite numbers > 0, got '-1'"),
    (["--step_sizes=nan"], "--step_sizes"),
    (["--momenta=abc"], "--momenta must list finite numbers, got 'abc'"),
    (["--tau=inf"], "--tau"),
    (["--num_examples=1", "--batch_sizes=1"], "--num_examples must be >= 2"),
    (["--nu=0"], "--nu must be a finite number > 0"),
    (["--kappa=-1"], "--kappa"),
    (["--steps=0"], "--steps must be >= 1"),
    (["--seeds=0"], "--seeds must be >= 1"),
    (["--hidden_width=0"], "--hidden_width"),
    (["--regimes=network"], "--regimes=network needs real inputs: --data=mnist"),
    (["--regimes=averaged", "--num_examples=2001"],
     "--num_examples=2001 is above --max_averaged_examples=2000"),
    (["--data=mnist"], "--data=mnist needs --manual_dir=FOLDER"),
    (["--data=mnist", "--manual_dir={tmp}/empty"], "empty/train-images-idx3-ubyte.gz and "),
    (["--data=mnist", "--manual_dir={tmp}/broken"], "is not an IDX file"),
    (["--out={tmp}/file/sub"], "is not a folder"),
    (["--data=cifar"], "data"),
    (["--aggregate=zip", "--batch_sizes=1,10", "--step_sizes=0.1,0.2,0.3"],
     "--aggregate=zip needs --batch_sizes, --step_sizes and --momenta of equal length (or of "
     "one value), got 2, 3, 1"),
    (["--aggregate=sum"], "--aggregate"),
    (["--data=cifar10", "--num_examples=50001"], "but CIFAR-10's training split holds 50000"),
    (["--data=cifar10", "--manual_dir={tmp}/missing"], "--manual_dir={tmp}/missing: "),
    (["--data=cifar10", "--tfds_data_dir={tmp}/file/sub"], "is not a folder"),
    (["--csv_path=x.csv"], "--csv_path applies to --data=csv, not --data=synthetic"),
    (["--subset=first"], "--subset applies to --data=mnist or cifar10 or csv"),
    (["--data=csv", "--target_column=y"], "--data=csv needs --csv_path"),
]


@pytest.mark.parametrize("args,message", BAD)
def test_bad_input_is_one_line_and_exit_code_2(folders, capsys, args, message):
  out = [] if args == [] else [f"--out={folders}/out"]
  args = [a.replace("{tmp}", str(folders)) for a in args]
  message = message.replace("{tmp}", str(folders))
  with pytest.raises(SystemExit) as stop:              # a malformed flag exits from the parser
    sys.exit(power_law.main(out + args))
  assert stop.value.code == 2
  err = capsys.readouterr().err.strip().splitlines()
  assert len(err) == 1 and err[0].startswith("power_law: error: ") and message in err[0], err
  assert not (folders / "out").exists()


def test_more_examples_than_the_mnist_files_hold_is_refused(shared_data, tmp_path, capsys):
  code = power_law.main([f"--out={tmp_path}/out", "--data=mnist", "--num_examples=60001",
                         f"--manual_dir={shared_data / 'mnist'}"])
  err = capsys.readouterr().err.strip()
  assert code == 2 and "--num_examples=60001 but" in err and "holds 60000 training" in err


def test_mnist_is_read_from_its_idx_files(shared_data):
  images, labels = idx.mnist_train(str(shared_data / "mnist"), 5)
  assert images.shape == (5, 784) and images.dtype == np.uint8
  assert labels.tolist() == [5, 0, 4, 1, 9]                # MNIST's first training labels
  assert idx.count(str(shared_data / "mnist" / idx.MNIST_TRAIN[1])) == 60000


def curve(regime, tau, b, alpha, beta, final, seeds=1):
  """A run whose loss falls from 1 to `final` as a power law, one row per seed."""
  steps = np.flatnonzero(scan.record_mask(1000))
  mean = np.maximum(steps, 1.0) ** (np.log(final) / np.log(1000)) if final > 0 else steps * 0.0
  rows = np.stack([mean * (1 + 0.01 * (s - (seeds - 1) / 2)) for s in range(seeds)])
  return Curve(regime, tau, b, alpha, beta, rows)


def test_results_hold_exactly_the_keys_and_the_best_run_of_each_regime_and_batch():
  curves = [curve("linearized", None, 10, 0.5, 0.0, 1e-3, seeds=3),
            curve("linearized", None, 10, 0.5, -0.2, 1e-4, seeds=3),
            curve("spectral_diagonal", -1.0, 10, 0.5, 0.0, 1e-5),
            curve("spectral_diagonal", 1.0, 10, 0.5, 0.0, 1e-2)]
  overflowed = curve("spectral_diagonal", 1.0, 20, 2.0, 0.0, 1e-2)
  overflowed.losses[:, -3:] = np.inf
  curves.append(overflowed)
  steps = np.flatnonzero(scan.record_mask(1000))
  spectrum = fits.spectrum(*problem.power_law_spectrum(1000, 1.5, 3.0))
  files = {"curves": "curves.npz", "spectrum": "spectrum.npz"}
  doc = json.loads(json.dumps(results.document(spectrum, curves, steps, files), allow_nan=False))
  assert set(doc) == {"spectrum", "runs", "best", "files"} and doc["files"] == files
  assert set(doc["spectrum"]) == SPECTRUM_KEYS
  assert doc["spectrum"]["scale"] == pytest.approx(1.0)                # λ_k = k^-1.5 exactly
  assert all(set(r) == RUN_KEYS for r in doc["runs"])
  assert doc["runs"][0]["tau"] is None and doc["runs"][2]["tau"] == -1.0
  assert doc["runs"][1]["exponent"] == pytest.approx(4 / 3, rel=1e-6)   # 1e-4 after 1000 steps
  assert [r["converged"] for r in doc["runs"]] == [True, True, True, True, False]
  assert doc["runs"][4]["final_loss"] is None and doc["runs"][4]["exponent"] is None
  assert doc["best"] == {
      "linearized/b=10": {"step_size": 0.5, "momentum": -0.2, "final_loss": pytest.approx(1e-4)},
      "spectral_diagonal/tau=-1/b=10": {"step_size": 0.5, "momentum": 0.0,
                                        "final_loss": pytest.approx(1e-5)},
      "spectral_diagonal/tau=1/b=10": {"step_size": 0.5, "momentum": 0.0,
                                       "final_loss": pytest.approx(1e-2)},
      "spectral_diagonal/tau=1/b=20": {"step_size": None, "momentum": None, "final_loss": None}}
  assert results.gap_to_linearized(curves[2], curves) is not None
  assert results.gap_to_linearized(curves[4], curves) is None          # no linearized twin
  lines = results.table(doc, curves, problem.power_law_spectrum(1000, 1.5, 3.0)[0], 1000, 1000)
  assert len(lines) == 1 + len(curves) + len(doc["best"])


def test_figures_have_a_panel_per_setting_and_the_stability_maps_their_boundaries():
  curves = [curve(regime, tau, b, alpha, beta, 1e-3 * alpha, seeds=2 if tau is None else 1)
            for regime, tau in (("linearized", None), ("spectral_diagonal", 1.0))
            for b in (1, 10) for alpha in (0.5, 1.0) for beta in (-0.2, 0.0, 0.5)]
  steps = np.flatnonzero(scan.record_mask(1000))
  eigenvalues = problem.power_law_spectrum(1000, 1.5, 3.0)[0]
  panels = figures.curves_panels(curves, steps)
  assert len(panels) == 12 and all(p.log_x and p.log_y for p in panels)
  assert [s.label for s in panels[0].series] == ["linearized", "spectral_diagonal/tau=1"]
  assert panels[0].series[0].lower is not None and panels[0].series[1].lower is None
  maps = figures.stability_heatmaps(curves, eigenvalues, 1000)
  assert [m.title for m in maps] == ["linearized, b=1", "linearized, b=10",
                                     "spectral_diagonal/tau=1, b=1",
                                     "spectral_diagonal/tau=1, b=10"]
  assert all(isinstance(m, Heatmap) and np.shape(m.values) == (3, 2) for m in maps)
  labels = [c.label for c in maps[0].curves]
  assert labels == ["β = ±1", "αλ_max = 2(1+β)", "U(1) = 1 (τ=1)", "lowest loss"]
  assert (maps[0].curves[3].xs, maps[0].curves[3].ys) == ([0.5], [-0.2])   # α · 1e-3 is lowest
  u = maps[0].curves[2]                                     # b = 1: γ = 1
  assert len(u.xs) > 50 and min(u.ys) < -0.2 and max(u.ys) > 0.5
  for alpha, beta in zip(u.xs, u.ys):
    assert conditions.u_one(eigenvalues, alpha, beta, 1.0, 1.0) == pytest.approx(1.0, rel=1e-6)
  budget = figures.budget_panels(curves, steps)
  assert [len(p.series) for p in budget] == [2, 2]
  assert budget[0].series[1].xs[0] == 10                    # t·b from t = 1 at b = 10
  assert len(figures.spectrum_panels(*problem.power_law_spectrum(1000, 1.5, 3.0),
                                     fits.spectrum(*problem.power_law_spectrum(1000, 1.5, 3.0)))
             ) == 2


@pytest.mark.slow
def test_end_to_end_on_mnist_writes_the_results_and_the_four_pdfs(shared_data, tmp_path, capsys):
  help_out = subprocess.run(
      [sys.executable, "-c", "import sys, runpy; sys.argv = ['power_law', '--help']\n"
       "try:\n  runpy.run_module('sam_edge.power_law', run_name='__main__')\n"
       "except SystemExit:\n  pass\nassert 'jax' not in sys.modules"],
      cwd=REPO, capture_output=True, text=True, timeout=60)
  assert help_out.returncode == 0 and "--max_averaged_examples" in help_out.stdout, help_out
  out = tmp_path / "study"
  args = [f"--out={out}", "--data=mnist", f"--manual_dir={shared_data / 'mnist'}",
          "--num_examples=48", "--hidden_width=64",
          "--regimes=spectral_diagonal,network,averaged,linearized", "--batch_sizes=4,48",
          "--step_sizes=0.5,1", "--momenta=-0.3,0.5", "--tau=1,-1", "--steps=60", "--seeds=2"]
  code = power_law.main(args)
  printed = capsys.readouterr()
  assert code == 0, printed.err[-3000:]
  doc = json.loads((out / "results.json").read_text())
  assert set(doc) == {"spectrum", "runs", "best", "files"}
  assert set(doc["spectrum"]) == SPECTRUM_KEYS
  saved = np.load(out / doc["files"]["curves"])
  assert list(saved["regime"][::8]) == [r["regime"] for r in doc["runs"][::8]]
  assert saved["losses"].shape == (40, 2, len(saved["steps"]))
  assert np.load(out / doc["files"]["spectrum"])["eigenvalues"].shape == (48,)
  assert len(doc["runs"]) == 5 * 2 * 2 * 2 and all(set(r) == RUN_KEYS for r in doc["runs"])
  assert [r["regime"] for r in doc["runs"][::8]] == ["network", "linearized", "averaged",
                                                     "spectral_diagonal", "spectral_diagonal"]
  assert set(doc["best"]) == {f"{k}/b={b}" for b in (4, 48) for k in (
      "network", "linearized", "averaged", "spectral_diagonal/tau=-1", "spectral_diagonal/tau=1")}
  assert doc["best"]["linearized/b=4"]["final_loss"] < doc["runs"][8]["final_loss"] * 10
  full = {r["regime"]: r["final_loss"] for r in doc["runs"]
          if r["batch_size"] == 48 and r["step_size"] == 0.5 and r["momentum"] == 0.5}
  assert full["linearized"] == pytest.approx(full["averaged"], rel=1e-9)     # b = N: no noise
  assert full["linearized"] == pytest.approx(full["spectral_diagonal"], rel=1e-9)
  for name in ("curves", "spectrum", "stability", "budget"):
    assert (out / f"{name}.pdf").read_bytes()[:4] == b"%PDF"
  assert "best spectral_diagonal/tau=1/b=4:" in printed.out


def settings_from(args: list[str]) -> tuple:
  """(settings, problems) of the command's flags `args`."""
  fv = power_law.flag_values()
  fv(["power_law", "--out=unused", *args])
  return settings.settings_of(fv)


def test_zip_runs_the_ith_batch_size_step_size_and_momentum_together():
  s, problems = settings_from(["--aggregate=zip", "--batch_sizes=100,1,10",
                               "--step_sizes=0.8,0.3,0.5", "--momenta=0.2"])
  assert not problems
  assert s.configs == ((100, 0.8, 0.2), (1, 0.3, 0.2), (10, 0.5, 0.2))
  s, _ = settings_from(["--batch_sizes=100,1,10", "--step_sizes=0.8,0.3,0.5", "--momenta=0.2"])
  assert len(s.configs) == 9 and s.configs[0] == (1, 0.3, 0.2)          # product, sorted
  s, _ = settings_from(["--aggregate=zip", "--batch_sizes=1,1", "--step_sizes=0.3,0.3"])
  assert s.configs == ((1, 0.3, 0.0),)                                # each run once
  zipped = [curve("spectral_diagonal", 1.0, b, a, m, 1e-3) for b, a, m in
            ((10, 0.3, 0.0), (10, 0.5, 0.5), (10, 0.8, 0.0))]
  zipped[2].losses[:, -1] = np.inf                                     # overflowed: the cap
  heat = figures.stability_heatmaps(zipped, problem.power_law_spectrum(100, 1.5, 3.0)[0], 100)
  assert len(heat) == 1 and np.shape(heat[0].values) == (2, 3)
  assert np.isnan(heat[0].values).sum() == 3                          # three cells not run
  assert np.isfinite(heat[0].values[0, 2])


def test_curves_npz_holds_what_curves_pdf_draws(tmp_path, monkeypatch):
  drawn = helpers.capture_figures(monkeypatch)
  out = tmp_path / "study"
  code = power_law.main([f"--out={out}", "--num_examples=60", "--steps=300", "--seeds=2",
                         "--regimes=linearized,spectral_diagonal", "--batch_sizes=5,60",
                         "--step_sizes=0.5", "--momenta=-0.2,0.3", "--tau=1,-1"])
  assert code == 0
  doc = json.loads((out / "results.json").read_text())
  saved = np.load(out / doc["files"]["curves"])
  assert [(r["regime"], r["tau"], r["batch_size"], r["step_size"], r["momentum"])
          for r in doc["runs"]] == [
      (str(g), None if np.isnan(t) else t, int(b), a, m) for g, t, b, a, m in
      zip(saved["regime"], saved["tau"], saved["batch_size"], saved["step_size"],
          saved["momentum"])]
  steps = saved["steps"]
  later = steps > 0
  labels = [g if np.isnan(t) else f"{g}/tau={t:g}" for g, t in zip(saved["regime"], saved["tau"])]
  index = {(labels[i], int(b), a, m): i for i, (b, a, m) in
           enumerate(zip(saved["batch_size"], saved["step_size"], saved["momentum"]))}
  seen, laws = set(), 0
  for panel in drawn["curves.pdf"]:
    b, a, m = re.fullmatch(r"b=(\d+), α=(\S+), β=(\S+)", panel.title).groups()
    for series in panel.series:
      np.testing.assert_array_equal(series.xs, steps[later])
      if series.label.startswith("law of "):
        i = index[(series.label[len("law of "):].split(":")[0], int(b), float(a), float(m))]
        np.testing.assert_array_equal(series.ys, saved["law"][i][later])
        laws += 1
        continue
      i = index[(series.label, int(b), float(a), float(m))]
      rows = saved["losses"][i, :saved["seeds"][i]]
      assert np.all(np.isnan(saved["losses"][i, saved["seeds"][i]:]))
      np.testing.assert_array_equal(series.ys, rows.mean(0)[later])
      if series.lower is not None:
        np.testing.assert_array_equal(series.lower, rows.min(0)[later])
        np.testing.assert_array_equal(series.upper, rows.max(0)[later])
      seen.add(i)
  assert seen == set(range(len(labels)))                               # every run is drawn
  sd = saved["regime"] == "spectral_diagonal"
  assert laws == sd.sum() == 8 and list(saved["seeds"]) == [2] * 4 + [1] * 8
  assert np.all(np.isfinite(saved["law"][sd][:, later])) and np.all(np.isnan(saved["law"][~sd]))
  spectrum = np.load(out / doc["files"]["spectrum"])
  assert spectrum["eigenvalues"][0] == 1.0 and spectrum["c0"].shape == (60,)
  assert np.mean(spectrum["c0"]) / 2 == pytest.approx(saved["losses"][0, 0, 0])   # L(0)
