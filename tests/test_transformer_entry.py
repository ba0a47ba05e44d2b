"""End to end: `python -m transformer` on a slice of tinyshakespeare, and its corpus errors."""

import math
import pickle
import subprocess
import sys

import pytest

import transformer
from sam_edge.cli import main as cli
from tests.helpers import REPO
from tests.helpers import TINY_TRANSFORMER as TINY


def outputs(tmp_path):
  names = {"eigs_curve_output": "eigs.pdf", "eigs_se_only_output": "se.pdf",
           "alignment_curve_output": "a.pdf", "loss_curve_output": "ell.pdf",
           "raw_data_output": "raw.pkl"}
  return {flag: tmp_path / name for flag, name in names.items()}


def run_main(args, tmp_path):
  """Parses `args` (plus outputs in tmp_path) and runs main in-process; returns (code, outputs)."""
  out = outputs(tmp_path)
  argv = ["transformer"] + args + [f"--{flag}={path}" for flag, path in out.items()]
  cli.parse_flags(transformer.FLAGS, argv)
  return transformer.main([]), out


@pytest.mark.slow
@pytest.mark.parametrize("rho, k", [(0.0, 1), (0.1, 3)])
def test_end_to_end(corpus, tmp_path, capsys, rho, k):
  code, out = run_main([f"--training_data={corpus}", f"--rho={rho}",
                        f"--num_principal_components={k}", "--measure_every_steps=1",
                        "--max_steps=3"] + TINY, tmp_path)
  printed = capsys.readouterr().out
  assert code == 0
  assert "holding out the last 10%" in printed
  assert printed.count("measure step") == 3
  test_loss = float(printed.split("test_loss: ")[1].split()[0])
  assert math.isfinite(test_loss) and 0 < test_loss < 6
  for flag in ("eigs_curve_output", "eigs_se_only_output", "alignment_curve_output",
               "loss_curve_output"):
    assert out[flag].read_bytes().startswith(b"%PDF")
  raw = pickle.loads(out["raw_data_output"].read_bytes())
  assert [r["step"] for r in raw["records"]] == [0, 1, 2]
  for r in raw["records"]:
    assert len(r["eigenvalues"]) == k and len(r["residuals"]) == k
    for name in ("sam_edge", "two_over_eta", "grad_norm", "loss", "g_alignment", "sg_alignment"):
      assert math.isfinite(r[name])
    assert all(math.isfinite(v) for v in r["eigenvalues"] + r["residuals"])
  assert raw["final"]["stopped_because"] == "max_steps" and raw["final"]["steps"] == 3
  assert raw["final"]["test_loss"] == pytest.approx(test_loss)
  assert raw["config"]["rho"] == rho and raw["config"]["training_data"] == str(corpus)


@pytest.mark.slow
def test_curvature_beyond_lambda1_lands_in_records_and_pdfs(corpus, tmp_path, capsys):
  """Every curvature kind through the entry point: record keys, the pickle, both PDFs."""
  density, curvature = tmp_path / "density.pdf", tmp_path / "curvature.pdf"
  code, out = run_main([f"--training_data={corpus}", "--measure_every_steps=2", "--max_steps=3",
                        "--measure_trace", "--trace_probes=9", "--measure_density",
                        "--density_probes=1", "--density_steps=10", "--measure_per_layer",
                        "--measure_min_eigenvalue", "--min_eigenvalue_max_steps=20",
                        f"--density_output={density}", f"--curvature_output={curvature}"]
                       + TINY, tmp_path)
  printed = capsys.readouterr().out
  assert code == 0 and "tr(H)" in printed and "λmin" in printed
  raw = pickle.loads(out["raw_data_output"].read_bytes())
  for r in raw["records"]:
    assert r["trace_stderr"] > 0 and r["trace_hvps"] == 9
    assert len(r["density"]["nodes"]) == 1 and len(r["density"]["nodes"][0]) == 10
    assert sum(r["density"]["weights"][0]) == pytest.approx(1, rel=1e-4)
    assert "transformer/output" in r["per_layer"]
    assert r["min_eigenvalue"] <= r["eigenvalues"][0]
  assert density.read_bytes().startswith(b"%PDF") and curvature.read_bytes().startswith(b"%PDF")


@pytest.mark.slow
def test_tensorboard_scalars_as_they_happen(corpus, tmp_path, capsys):
  """--tensorboard_dir (a folder whose parent does not exist yet): the loss of every step and
  every measurement's scalars, each at its step, equal to the pickle's."""
  import tensorflow as tf
  from tensorboard.backend.event_processing import event_accumulator
  board = tmp_path / "boards" / "run"
  code, out = run_main([f"--training_data={corpus}", "--measure_every_steps=2", "--max_steps=4",
                        "--eval_every_steps=2", f"--tensorboard_dir={board}"] + TINY, tmp_path)
  assert code == 0
  raw = pickle.loads(out["raw_data_output"].read_bytes())
  (events,) = board.iterdir()
  acc = event_accumulator.EventAccumulator(str(events), size_guidance={"tensors": 0})
  acc.Reload()
  def read(tag):
    events = acc.Tensors(tag)
    return [e.step for e in events], [float(tf.make_ndarray(e.tensor_proto)) for e in events]

  def same(tag, steps, values):
    got_steps, got_values = read(tag)
    assert got_steps == steps and got_values == pytest.approx(values, rel=1e-6), tag

  same("train/loss", raw["losses"]["step"], raw["losses"]["loss"])
  same("hessian/lambda_1", [r["step"] for r in raw["records"]],
       [r["eigenvalues"][0] for r in raw["records"]])
  same("test/loss", [e["step"] for e in raw["evaluations"]],
       [e["test_loss"] for e in raw["evaluations"]])
  assert f"TensorBoard scalars in {board}" in capsys.readouterr().out


@pytest.mark.slow
def test_bfloat16_trains_and_measures_in_float32(corpus, tmp_path, capsys):
  """--compute_dtype=bfloat16: the steps' losses are bfloat16 computations (close to, not equal
  to, float32's); the step-0 measurement, float32 at 'highest', is the float32 run's exactly."""
  args = [f"--training_data={corpus}", "--measure_every_steps=3", "--max_steps=3"] + TINY
  (tmp_path / "a").mkdir()
  code, out = run_main(args, tmp_path / "a")
  assert code == 0
  f32 = pickle.loads(out["raw_data_output"].read_bytes())
  (tmp_path / "b").mkdir()
  code, out = run_main(args + ["--compute_dtype=bfloat16"], tmp_path / "b")
  assert code == 0
  bf16 = pickle.loads(out["raw_data_output"].read_bytes())
  assert bf16["records"][0]["eigenvalues"] == f32["records"][0]["eigenvalues"]
  assert bf16["records"][0]["loss"] == f32["records"][0]["loss"]
  a, b = f32["losses"]["loss"][0], bf16["losses"]["loss"][0]
  assert a != b and b == pytest.approx(a, rel=2e-2)


@pytest.mark.slow
def test_linearized_regime_starts_at_the_network_and_trains(corpus, tmp_path, capsys):
  """--regime=linearized: f_lin and its Jacobian equal the network's at w0, so the step-0 loss
  and gradient are the network's (its Hessian is not: f_lin has no second-order term); then it
  trains its own trajectory, with finite measurements."""
  args = [f"--training_data={corpus}", "--measure_every_steps=2", "--max_steps=4",
          "--step_size=0.5"] + TINY
  runs = {}
  for regime in ("network", "linearized"):
    (tmp_path / regime).mkdir()
    code, out = run_main(args + [f"--regime={regime}"], tmp_path / regime)
    assert code == 0
    runs[regime] = pickle.loads(out["raw_data_output"].read_bytes())
  net, lin = runs["network"], runs["linearized"]
  assert lin["config"]["regime"] == "linearized"
  assert lin["losses"]["loss"][0] == pytest.approx(net["losses"]["loss"][0], rel=1e-5)
  assert lin["records"][0]["grad_norm"] == pytest.approx(net["records"][0]["grad_norm"], rel=1e-4)
  assert lin["losses"]["loss"][-1] != pytest.approx(net["losses"]["loss"][-1], rel=1e-4)
  assert all(math.isfinite(v) for r in lin["records"] for v in r["eigenvalues"])
  assert math.isfinite(lin["final"]["test_loss"])


@pytest.mark.slow
def test_same_seed_gives_identical_records(corpus, tmp_path, capsys):
  runs = []
  for i in range(2):
    folder = tmp_path / str(i)
    folder.mkdir()
    code, out = run_main([f"--training_data={corpus}", "--rho=0.05", "--measure_every_steps=2",
                          "--max_steps=4", "--seed=3"] + TINY, folder)
    assert code == 0
    runs.append(pickle.loads(out["raw_data_output"].read_bytes()))
  strip = lambda rs: [{k: v for k, v in r.items() if k not in ("seconds", "time")} for r in rs]
  assert strip(runs[0]["records"]) == strip(runs[1]["records"])
  assert runs[0]["losses"] == runs[1]["losses"]
  assert runs[0]["final"]["test_loss"] == runs[1]["final"]["test_loss"]


def test_zero_gap_without_step_schedule_measures_nothing(corpus, tmp_path, capsys):
  code, out = run_main([f"--training_data={corpus}", "--hessian_check_gap=0", "--max_steps=2"]
                       + TINY, tmp_path)
  assert code == 0
  raw = pickle.loads(out["raw_data_output"].read_bytes())
  assert raw["records"] == [] and raw["final"]["steps"] == 2
  assert "measure step" not in capsys.readouterr().out


def bad_corpora(tmp_path):
  (tmp_path / "empty.txt").write_bytes(b"")
  (tmp_path / "nul.txt").write_bytes(b"hello\x00world" * 100)
  (tmp_path / "accent.txt").write_bytes(b"caf" + "é".encode() + b" au lait" * 300)
  (tmp_path / "short.txt").write_bytes(b"too short")
  (tmp_path / "folder").mkdir()
  return {
      "missing": (tmp_path / "missing.txt", "missing.txt"),
      "directory": (tmp_path / "folder", "folder"),
      "empty": (tmp_path / "empty.txt", "empty"),
      "nul": (tmp_path / "nul.txt", "position 5"),
      "not_ascii": (tmp_path / "accent.txt", "position 3"),
      "too_short": (tmp_path / "short.txt", "--batch_size"),
  }


@pytest.mark.parametrize("case", ["missing", "directory", "empty", "nul", "not_ascii", "too_short"])
def test_bad_corpus_is_one_error_line_and_exit_2(tmp_path, capsys, case):
  path, expected = bad_corpora(tmp_path)[case]
  code, out = run_main([f"--training_data={path}"] + TINY, tmp_path)
  err = capsys.readouterr().err.strip().splitlines()
  assert code == 2
  assert len(err) == 1 and expected in err[0] and str(path.name) in err[0]
  assert not out["raw_data_output"].exists()


@pytest.mark.slow
def test_bad_corpus_from_the_command_line_has_no_traceback(tmp_path):
  (tmp_path / "accent.txt").write_bytes("naïve".encode() * 100)
  proc = subprocess.run(
      [sys.executable, "-m", "transformer", f"--training_data={tmp_path / 'accent.txt'}"],
      cwd=REPO, capture_output=True, text=True, timeout=120)
  assert proc.returncode == 2
  lines = [l for l in proc.stderr.splitlines() if l.strip()]
  assert len(lines) == 1, proc.stderr
  assert "not ASCII" in lines[0] and "position 2" in lines[0] and "Traceback" not in proc.stderr
