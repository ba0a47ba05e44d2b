"""`python -m sam_edge.evaluate`: bad input is one line and exit code 2 before any work; the
top-5 error; the file's columns and how compare joins them; on real runs, the run's own test
error, and λ1 equal to the measurement a longer run took at the same parameters (slow)."""

import csv
import json
import os
import pickle
import subprocess
import sys

import jax.numpy as jnp
import numpy as np
import pytest

import image_classification as ic
from sam_edge import compare, errors, records
from sam_edge import evaluate as evaluate_cli
from sam_edge.cli import main as cli
from sam_edge.models import losses
from sam_edge.run import params_file
from sam_edge.studies import evaluated, evaluation, network_eval
from tests import helpers
from tests.helpers import REPO


def _params(folder, task="image_classification", **config):
  """A run folder with only a parameters file, whose data folders do not exist (reading data
  would fail differently)."""
  folder.mkdir()
  params = {"Dense_0": {"kernel": np.zeros((784, 4), np.float32), "bias": np.zeros(4, np.float32)}}
  config = {"seed": 0, "nn_architecture": "MLP", "mlp_width": 4, "mlp_depth": 2,
            "manual_dir": str(folder / "no_data"), "tfds_data_dir": str(folder / "no_tfds"),
            **config}
  params_file.write(str(folder / "params.npz"), task, 4, config, params, {})
  return folder


@pytest.mark.parametrize("args, message", [
    ([], "give at least one run folder"),
    (["{missing}"], "{missing}: no such file or folder"),
    (["{empty}"], "holds no parameters file"),
    (["{run}", "--metrics=loss,sharpness"], "--metrics: unknown metric 'sharpness'"),
    (["{run}", "--metrics="], "--metrics: give some of"),
    (["{run}", "--examples=0"], "--examples=0: must be at least 1"),
    (["{run}", "--trace_probes=-3"], "--trace_probes=-3: must be at least 1"),
    (["{run}", "--out={blocked}/e.json"], "is not a directory"),
    (["{run}", "--out={empty}"], "is a directory"),
    (["{run}", "--split=validation"], "this run has no validation split"),
    (["{run}", "{transformer}"], "a transformer run; evaluate supports image_classification"),
])
def test_bad_input_is_one_line_and_exit_2(tmp_path, capsys, args, message):
  names = {"missing": tmp_path / "nope", "empty": tmp_path / "empty",
           "run": _params(tmp_path / "run"), "blocked": tmp_path / "file",
           "transformer": _params(tmp_path / "t", task="transformer")}
  names["empty"].mkdir()
  names["blocked"].write_text("")
  assert evaluate_cli.main([a.format(**names) for a in args]) == 2
  err = capsys.readouterr().err.strip().splitlines()
  assert len(err) == 1 and err[0].startswith("evaluate: error: "), err
  assert message.format(**names) in err[0]
  assert not list(tmp_path.glob("**/*.json"))                  # nothing written


def test_a_validation_split_is_accepted_where_the_config_has_one(tmp_path):
  with_one = _params(tmp_path / "v", validation_fraction=0.1)
  t = evaluation.trained.load(str(with_one))
  evaluation.check_run(t, "validation")                         # no error: the split exists
  with pytest.raises(errors.InputError, match="no validation split"):
    evaluation.check_run(evaluation.trained.load(str(_params(tmp_path / "w"))), "validation")


@pytest.mark.parametrize("runs, args, message", [
    ("big,small", ["--metrics=loss,error", "--examples=200"],
     "{small}: --examples=200: the run's train split has 100 examples"),
    ("big,small", ["--split=test", "--metrics=error", "--examples=101"],
     "{small}: --examples=101: the run's test split has 100 examples"),
    ("big,small", ["--metrics=lambda1", "--measure_chunk=30"],     # 60000 examples, then 100
     "{small}: --measure_chunk=30 does not divide the 100 train examples"),
    ("big,own", ["--metrics=loss,trace", "--examples=500"],
     "{own}: --measure_chunk=300 (the run's) does not divide the 500 train examples"),
])
def test_sizes_are_checked_for_every_run_before_any_is_evaluated(tmp_path, capsys, runs, args,
                                                                   message):
  """The first run fits (the whole MNIST training set); a later one does not: the error comes
  before any data is read (the runs' data folders do not exist), from the sizes in their
  configs, and nothing is written."""
  names = {"big": _params(tmp_path / "big", batch_size=100, measure_chunk=100),
           "small": _params(tmp_path / "small", batch_size=100, mini_training_set_num_batches=1,
                            mini_test_set_num_batches=1),
           "own": _params(tmp_path / "own", batch_size=100, measure_chunk=300)}
  out = tmp_path / "e.json"
  assert evaluate_cli.main([*(str(names[n]) for n in runs.split(",")), *args,
                            f"--out={out}"]) == 2
  captured = capsys.readouterr()
  err = captured.err.strip().splitlines()
  assert len(err) == 1 and err[0].startswith("evaluate: error: "), err
  assert message.format(**{k: v / "params.npz" for k, v in names.items()}) in err[0]
  assert "run 1/" not in captured.out and not out.exists()       # no run evaluated


def test_sizes_come_from_the_config_without_the_data(tmp_path):
  load = lambda folder: evaluation.trained.load(str(folder))
  mini = load(_params(tmp_path / "m", batch_size=64, mini_training_set_num_batches=2,
                      mini_test_set_num_batches=1000))
  assert evaluation.split_size(mini, "train") == 128
  assert evaluation.split_size(mini, "test") == 10_000                  # the whole test set
  cifar = load(_params(tmp_path / "c", dataset="cifar10", batch_size=50))
  assert (evaluation.split_size(cifar, "train"), evaluation.split_size(cifar, "test")) == (
      50_000, 10_000)
  assert evaluation.split_size(load(_params(tmp_path / "v", validation_fraction=0.1)),
                               "validation") is None                    # checked once read


@pytest.mark.parametrize("failure", ["input", "interrupt"])
def test_runs_evaluated_before_a_later_failure_are_kept(tmp_path, capsys, monkeypatch, failure):
  """A problem found only once a run's data is read (here: the second of three runs), or an
  interrupt: the first run's entry is printed and written to --out, with a line saying so."""
  runs = [str(_params(tmp_path / n)) for n in ("a", "b", "c")]
  evaluated_runs = []

  def entry(t, name, folder, settings, log):
    if name == "b":
      if failure == "input":
        raise errors.InputError(f"{t.path}: the data is not there")
      raise KeyboardInterrupt
    evaluated_runs.append(name)
    return {"run": name, "folder": folder, "params": t.path, "task": t.task, "step": t.step,
            "split": settings.split, "examples": 100, "loss": 0.5, "seconds": 1.0}
  monkeypatch.setattr(evaluation, "entry", entry)
  out = tmp_path / "e.json"
  if failure == "input":
    assert evaluate_cli.main([*runs, "--metrics=loss", f"--out={out}"]) == 2
  else:
    with pytest.raises(KeyboardInterrupt):
      evaluate_cli.main([*runs, "--metrics=loss", f"--out={out}"])
  captured = capsys.readouterr()
  assert evaluated_runs == ["a"]                                  # c is never started
  (kept,) = json.loads(out.read_text())["runs"]
  assert kept["run"] == "a" and kept["loss"] == 0.5
  assert f"wrote {out}: it holds the first 1 of the 3 runs" in captured.out
  assert any(line.startswith("a ") for line in captured.out.splitlines())   # the table
  if failure == "input":
    err = captured.err.strip().splitlines()
    assert len(err) == 1 and err[0] == f"evaluate: error: {runs[1]}/params.npz: the data is " \
        "not there", err


def test_import_and_help_load_no_jax():
  code = ("import sys\nfrom sam_edge import evaluate\n"
          "heavy = [m for m in ('jax', 'matplotlib', 'tensorflow', 'flax') if m in sys.modules]\n"
          "assert not heavy, heavy\n")
  subprocess.run([sys.executable, "-c", code], cwd=REPO, check=True, timeout=60)
  out = subprocess.run([sys.executable, "-m", "sam_edge.evaluate", "--help"], cwd=REPO,
                       capture_output=True, text=True, timeout=60)
  assert out.returncode == 0 and "--split" in out.stdout and "--metrics" in out.stdout


def test_top5_error_counts_labels_outside_the_five_largest_outputs():
  logits = jnp.tile(jnp.arange(10.0), (4, 1))                   # class c has output c
  labels = jnp.array([9, 5, 4, 0])                              # 0, 4, 5, 9 outputs above
  top5 = lambda logits, labels: losses.not_in_top_k(logits, labels, network_eval.TOP_K)
  np.testing.assert_array_equal(top5(logits, labels), [0, 0, 1, 1])
  ties = jnp.zeros((1, 10))
  assert float(top5(ties, jnp.array([3]))[0]) == 0.0                      # ties: in its favour


def test_columns_and_how_compare_joins_them(tmp_path):
  assert [evaluated.column("train", m) for m in evaluated.METRICS] == [
      "train_loss_full", "train_error_full", "train_top5_full", "lambda1_post", "trace_post"]
  assert evaluated.column("test", "lambda1") == "lambda1_post_test"
  assert evaluated.column("test", "error") == "test_error_full"
  (tmp_path / "a").mkdir()
  os.symlink(tmp_path / "a", tmp_path / "link")
  entry = {"run": "a", "folder": str(tmp_path / "link") + "/", "split": "train", "loss": 0.5,
           "error": 0.25, "lambda1": {"value": 3.0, "residual": 1e-6, "converged": True}}
  folders = {"run a": str(tmp_path / "a"), "run b": str(tmp_path / "b")}
  joined, unmatched = evaluated.join({"e.json": [entry, {**entry, "folder": "/elsewhere"}]},
                                     folders)
  assert joined == {"run a": {"train_loss_full": 0.5, "train_error_full": 0.25,
                              "lambda1_post": 3.0}} and unmatched == 1
  test_entry = {**entry, "split": "test"}                      # other columns: no conflict
  assert set(evaluated.join({"e": [entry], "f": [test_entry]}, folders)[0]["run a"]) == {
      "train_loss_full", "train_error_full", "lambda1_post", "test_loss_full",
      "test_error_full", "lambda1_post_test"}
  with pytest.raises(errors.InputError, match="run a has train_loss_full in both e and f"):
    evaluated.join({"e": [entry], "f": [entry]}, folders)
  with pytest.raises(errors.InputError, match="none of the runs evaluated in e"):
    evaluated.join({"e": [{**entry, "folder": "/elsewhere"}]}, folders)


@pytest.mark.parametrize("contents, message", [
    ("not json", "not JSON"),
    ('{"runs": []}', "not a file of `python -m sam_edge.evaluate --out`"),
    ('{"format": "sam-edge evaluation", "runs": [{"split": "train"}]}', "needs a folder"),
])
def test_compare_refuses_a_bad_evaluations_file_in_one_line(tmp_path, capsys, contents, message):
  bad = tmp_path / "e.json"
  bad.write_text(contents)
  assert compare.main([str(tmp_path), f"--out={tmp_path / 'o'}", f"--evaluations={bad}"]) == 2
  err = capsys.readouterr().err.strip().splitlines()
  assert len(err) == 1 and message in err[0], err
  assert not (tmp_path / "o").exists()


def test_compare_joins_an_evaluation_by_the_run_s_folder(tmp_path, capsys):
  run = tmp_path / "run"
  run.mkdir()
  records.write_raw(str(run / "raw.pkl"), {"config": {"seed": 0}, "records": [],
                                           "losses": {"step": [0], "loss": [1.0]},
                                           "final": {"steps": 1}})
  entry = {"run": "x", "folder": str(tmp_path / "other"), "split": "train", "loss": 0.5}
  file = tmp_path / "e.json"
  file.write_text(json.dumps(evaluated.document([entry])))
  assert compare.main([str(run), f"--out={tmp_path / 'o'}", f"--evaluations={file}"]) == 2
  err = capsys.readouterr().err.strip().splitlines()
  assert len(err) == 1 and "none of the runs evaluated in" in err[0], err
  assert not (tmp_path / "o").exists()                          # refused before any output
  file.write_text(json.dumps(evaluated.document([entry, {**entry, "folder": str(run)}])))
  assert compare.main([str(run), f"--out={tmp_path / 'o'}", f"--evaluations={file}"]) == 0
  (row,) = csv.DictReader(open(tmp_path / "o" / "summary.csv"))
  assert row["train_loss_full"] == "0.5" and row["final_train_loss"] == "1.0"
  assert "1 evaluated run is not among the runs compared" in capsys.readouterr().out


RUN = ["--nn_architecture=MLP", "--mlp_width=8", "--mlp_depth=2", "--batch_size=100",
       "--mini_training_set_num_batches=1", "--mini_test_set_num_batches=1", "--step_size=0.05",
       "--measure_every_steps=3", "--lanczos_max_steps=40", "--lanczos_tol=1e-6",
       "--measure_trace", "--trace_probes=12", "--hessian_check_gap=0", "--eigs_curve_output=",
       "--eigs_se_only_output=", "--alignment_curve_output=", "--loss_curve_output=",
       "--curvature_output="]


@pytest.mark.slow
def test_lambda1_is_the_measurement_a_longer_run_took_at_the_same_parameters(real_tfds, tmp_path,
                                                                             capsys):
  """A full-batch run of 3 steps writes its parameters after step 3, where the loop takes no
  measurement; the same run with a 4th step measures at step 3 (before that step), on the
  same parameters and on the same batch (all 100 training examples): evaluate's λ1 and loss on
  the training split equal that measurement's."""
  raws = {}
  for steps in (3, 4):
    folder = tmp_path / f"steps{steps}"
    folder.mkdir()
    cli.parse_flags(ic.FLAGS, [ic.PROG, f"--tfds_data_dir={real_tfds}", *RUN,
                               f"--max_steps={steps}", f"--raw_data_output={folder / 'raw.pkl'}",
                               f"--params_output={folder / 'params.npz'}"])
    assert ic.main([]) == 0
    raws[steps] = pickle.loads((folder / "raw.pkl").read_bytes())
  short, long = raws[3], raws[4]
  assert short["losses"]["loss"] == long["losses"]["loss"][:3]     # the same first 3 steps
  measured = long["records"][-1]
  assert measured["step"] == 3 and measured["converged"]
  out = tmp_path / "e.json"
  assert evaluate_cli.main([str(tmp_path / "steps3"), "--metrics=loss,lambda1,trace",
                            f"--out={out}", f"--tfds_data_dir={real_tfds}"]) == 0
  (entry,) = json.loads(out.read_text())["runs"]
  assert entry["step"] == 3 and entry["examples"] == 100 and entry["split"] == "train"
  assert entry["lambda1"]["value"] == pytest.approx(measured["eigenvalues"][0], rel=1e-5)
  assert entry["lambda1"]["converged"] and entry["lambda1"]["max_steps"] == 40
  assert entry["loss"] == pytest.approx(measured["loss"], rel=1e-5)
  assert entry["trace"]["probes"] == 12 and entry["trace"]["stderr"] > 0
  assert np.isfinite(entry["trace"]["value"]) and "error" not in entry
  assert "λ1 and tr(H) on 100 train examples" in capsys.readouterr().out


@pytest.mark.slow
def test_a_sweep_evaluated_and_joined_into_compare(tiny_sweep, real_tfds, tmp_path, capsys,
                                                    monkeypatch):
  run = tiny_sweep / "mlp_width=8,batch_size=50,seed=0"
  final = pickle.loads((run / "raw.pkl").read_bytes())["final"]
  test_file = tmp_path / "test.json"
  assert evaluate_cli.main([str(run), "--split=test", "--metrics=loss,error,top5",
                            f"--out={test_file}", f"--tfds_data_dir={real_tfds}"]) == 0
  (entry,) = json.loads(test_file.read_text())["runs"]
  assert entry["examples"] == final["test_examples"] == 100
  t = evaluation.trained.load(str(run))
  assert evaluation.split_size(t, "test") == 100                  # known before the data is read
  assert evaluation.split_size(t, "train") == final["training_examples"]
  assert entry["error"] == pytest.approx(final["test_error"], rel=1e-6)
  assert entry["loss"] == pytest.approx(final["test_loss"], rel=1e-5)   # no label smoothing
  assert 0 <= entry["top5"] <= entry["error"]
  capsys.readouterr()

  train_file = tmp_path / "train.json"
  assert evaluate_cli.main([str(tiny_sweep), "--metrics=loss,error", f"--out={train_file}",
                            f"--tfds_data_dir={real_tfds}"]) == 0
  entries = json.loads(train_file.read_text())["runs"]
  assert len(entries) == 8
  table = [line for line in capsys.readouterr().out.splitlines() if line.startswith("mlp_width=")]
  assert len(table) == 8 and all(" train " in line for line in table)      # the printed table
  drawn = helpers.capture_figures(monkeypatch)
  assert compare.main([str(tiny_sweep), f"--out={tmp_path / 'cmp'}",
                       f"--evaluations={train_file},{test_file}",
                       "--phase_axes=mlp_width,batch_size"]) == 0
  rows = {r["run"]: r for r in csv.DictReader(open(tmp_path / "cmp" / "summary.csv"))}
  for e in entries:
    row = rows[e["run"]]
    assert float(row["train_loss_full"]) == pytest.approx(e["loss"], rel=1e-9)
    assert float(row["train_error_full"]) == pytest.approx(e["error"], rel=1e-9)
    assert (row["test_error_full"] != "") == (e["run"] == run.name)
  titles = [m.title for m in drawn["phase.pdf"]]
  assert titles[:2] == ["test error", "train loss (evaluated)"]     # the notebook's order
  assert "training loss (last epoch)" in titles and "test error (evaluated)" in titles
