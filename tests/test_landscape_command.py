"""`python -m sam_edge.landscape`: bad input is one line and exit code 2 before any work; a
tiny MNIST run drawn along random, Hessian and three-run directions (slow)."""

import subprocess
import sys

import numpy as np
import pytest

from sam_edge import landscape
from sam_edge.run import params_file
from sam_edge.studies import trained
from tests.helpers import REPO


@pytest.mark.parametrize("args, message", [
    (["{missing}", "--out={out}"], "no such file or run folder"),
    (["{run}", "--out={out}", "--directions=sideways"], "--directions=sideways: choose one of"),
    (["{run}", "--out={out}", "--dims=3"], "--dims=3: must be 1"),
    (["{run}", "--out={out}", "--grid=1"], "--grid=1: need at least 2"),
    (["{run}", "--out={blocked}/x"], "is not a folder"),
    (["{run}"], "--out=DIR is required"),
    (["{run}", "{run}", "--out={out}"], "give exactly one run folder or params file"),
    (["{run}", "--out={out}", "--range=1,-1"], "--range=1,-1: need finite lo < hi"),
    (["{run}", "--out={out}", "--range=a"], "--range=a: give two numbers"),
    (["{run}", "--out={out}", "--directions=runs", "--runs={run}"],
     "needs --runs with 2 other runs (got 1)"),
    (["{run}", "--out={out}", "--directions=runs", "--dims=1", "--runs={missing}"],
     "--runs: {missing}: no such file"),
    (["{run}", "--out={out}", "--runs={run}"], "--runs is for --directions=runs"),
    (["{run}", "--out={out}", "--directions=runs", "--runs={comma}", "--runs={missing}"],
     "--runs: {missing}: no such file"),                 # a folder named with commas is one run
    (["{run}", "--out={out}", "--examples=-1"], "--examples=-1: must be >= 0"),
    (["{run}", "--out={out}", "--chunk=-1"], "--chunk=-1: must be >= 0"),
    (["{run}", "--out={out}", "--lanczos_steps=1"], "--lanczos_steps=1: must be >= 2"),
])
def test_bad_input_is_one_line_and_exit_2(tmp_path, capsys, args, message):
  run = tmp_path / "run"
  run.mkdir()
  blocked = tmp_path / "file"
  blocked.write_text("")
  comma = tmp_path / "mlp_width=8,seed=1"
  comma.mkdir()
  names = {"run": run, "out": tmp_path / "out", "missing": tmp_path / "nope", "blocked": blocked,
           "comma": comma}
  argv = [a.format(**names) for a in args]
  assert landscape.main(argv) == 2
  err = capsys.readouterr().err.strip().splitlines()
  assert len(err) == 1 and err[0].startswith("landscape: error: "), err
  assert message.format(**names) in err[0]
  assert not (tmp_path / "out").exists()                # nothing written: no work started


def test_folder_without_parameters_is_one_line(tmp_path, capsys):
  (tmp_path / "run").mkdir()
  assert landscape.main([str(tmp_path / "run"), f"--out={tmp_path / 'out'}"]) == 2
  err = capsys.readouterr().err.strip().splitlines()
  assert len(err) == 1 and "holds no parameters file" in err[0], err
  assert not (tmp_path / "out").exists()


def _params(folder, width, task="image_classification"):
  """A run folder with only a parameters file, whose config points at data that is not there
  (so reading data would fail differently)."""
  folder.mkdir()
  params = {"Dense_0": {"kernel": np.zeros((784, width), np.float32),
                        "bias": np.zeros(width, np.float32)}}
  config = {"seed": 0, "nn_architecture": "MLP", "mlp_width": width, "mlp_depth": 2,
            "manual_dir": str(folder / "no_data"), "tfds_data_dir": str(folder / "no_tfds")}
  params_file.write(str(folder / "params.npz"), task, 4, config, params, {})
  return folder


@pytest.mark.parametrize("case, message", [
    ("shape", "holds a network of another shape"),
    ("damaged", "not a readable parameters file"),
    ("transformer", "a transformer run; landscapes support image_classification runs"),
])
def test_other_runs_and_task_are_checked_before_any_data(tmp_path, capsys, case, message):
  run = _params(tmp_path / "run", 8, "transformer" if case == "transformer" else
                "image_classification")
  other = _params(tmp_path / "other", 16 if case == "shape" else 8)
  if case == "damaged":
    (other / "params.npz").write_bytes(b"not a zip")
  assert landscape.main([str(run), f"--out={tmp_path / 'out'}", "--directions=runs", "--dims=1",
                         f"--runs={other}"]) == 2
  err = capsys.readouterr().err.strip().splitlines()
  assert len(err) == 1 and message in err[0], err
  assert not (tmp_path / "out").exists()


def test_unknown_flag_is_one_line(tmp_path, capsys):
  with pytest.raises(SystemExit) as e:
    landscape.main([str(tmp_path), f"--out={tmp_path}/o", "--girth=3"])
  assert e.value.code == 2
  assert len(capsys.readouterr().err.strip().splitlines()) == 1


@pytest.mark.slow
def test_tiny_mnist_run_end_to_end(tiny_sweep, real_tfds, tmp_path, capsys):
  """Three runs of the shared sweep with the same network (width 8): the landscape of the first
  along random, Hessian and three-run directions, and a 1-D cut of its params file."""
  run0, run1, run2 = (tiny_sweep / f"mlp_width=8,batch_size={b},seed={s}"
                      for b, s in ((50, 0), (50, 1), (100, 0)))
  tfds = real_tfds
  t = trained.load(str(run0))
  p = trained.problem(t, tfds_data_dir=str(tfds))
  loss_at_theta = float(p.loss_fn(p.model_state, p.constants)(p.params, p.train_arrays)[0])
  cases = {"random": [], "hessian": [],                      # sweep folders: one --runs each
           "runs": [f"--runs={run1}", f"--runs={run2 / 'params.npz'}"]}
  for kind, extra in cases.items():
    out = tmp_path / f"land_{kind}"
    assert landscape.main([str(run0), f"--out={out}", f"--directions={kind}",
                           "--grid=5", f"--tfds_data_dir={tfds}", *extra]) == 0
    assert (out / "landscape.pdf").read_bytes().startswith(b"%PDF")
    with np.load(out / "landscape.npz") as z:
      assert z["loss"].shape == (5, 5) and np.all(np.isfinite(z["loss"]))
      i, j = int(np.flatnonzero(z["x"] == 0)[0]), int(np.flatnonzero(z["y"] == 0)[0])
      np.testing.assert_allclose(z["loss"][j, i], loss_at_theta, rtol=1e-5)
      assert int(z["examples"]) == 200 and str(z["directions"]) == kind
  with np.load(tmp_path / "land_runs" / "landscape.npz") as z:
    assert list(z["point_names"])[0] == "θ" and len(z["point_names"]) == 3
    np.testing.assert_allclose(z["point_coords"][1], [1.0, 0.0])
  out = capsys.readouterr().out
  assert "top Hessian eigenvectors" in out and "loss at θ" in out
  cut = tmp_path / "cut"
  assert landscape.main([str(run0 / "params.npz"), f"--out={cut}", "--dims=1",
                         "--grid=3", "--examples=20", f"--tfds_data_dir={tfds}"]) == 0
  with np.load(cut / "landscape.npz") as z:
    assert z["loss"].shape == (3,) and "y" not in z.files and int(z["examples"]) == 20
    first = trained.batch(p, range(20))
    np.testing.assert_allclose(
        z["loss"][1], float(p.loss_fn(p.model_state, p.constants)(p.params, first)[0]),
        rtol=1e-5)


def test_import_and_help_load_no_jax():
  code = ("import sys\nfrom sam_edge import landscape\n"
          "heavy = [m for m in ('jax', 'matplotlib', 'tensorflow', 'flax') if m in sys.modules]\n"
          "assert not heavy, heavy\n")
  subprocess.run([sys.executable, "-c", code], cwd=REPO, check=True, timeout=60)
  out = subprocess.run([sys.executable, "-m", "sam_edge.landscape", "--help"], cwd=REPO,
                       capture_output=True, text=True, timeout=60)
  assert out.returncode == 0 and "--directions" in out.stdout and "--grid" in out.stdout
