"""`sam_edge.results.load`: pickles of today's runs and of commit 2250650, run and sweep folders,
the checksums checked on load, the columns' rules, `to_pandas`, and the example of
docs/results.md run on a sweep."""

import csv
import json
import pathlib
import pickle
import re
import shlex
import shutil
import sys

import numpy as np
import pytest

from sam_edge import records, results
from sam_edge.studies.columns import MISSING, Columns, column
from tests.helpers import REPO, flip_a_measured_float

OLD_PICKLE = REPO / "tests" / "data" / "raw_2250650.pkl"   # written by commit 2250650 (docstring)
TINY_AXES = {"mlp_width": ("4", "8"), "batch_size": ("50", "100"), "seed": ("0", "1")}


def write_run_folder(folder: pathlib.Path, raw_file: pathlib.Path | None, **flags: str) -> None:
  """A sweep's run folder: command.txt with `flags` and, if given, a copy of the pickle."""
  folder.mkdir(parents=True)
  argv = ["python", "-m", "image_classification", *(f"--{k}={v}" for k, v in flags.items()),
          f"--raw_data_output={folder / 'raw.pkl'}"]
  (folder / "command.txt").write_text(shlex.join(argv) + f"\n# working directory: {folder}\n")
  if raw_file is not None:
    shutil.copy(raw_file, folder / "raw.pkl")


# --------------------------------------------------------------------------------------------
# A pickle of commit 2250650 (`python -m image_classification --rho=0.05 --mlp_width=8
# --batch_size=50 --mini_training_set_num_batches=1 --mini_test_set_num_batches=1 --max_steps=4
# --measure_every_steps=2 --eval_every_steps=2`, MNIST)


def test_reads_a_pickle_written_by_commit_2250650():
  run = results.load(OLD_PICKLE)
  assert isinstance(run, results.Run)
  assert run.name == "raw_2250650" and run.path == str(OLD_PICKLE)
  assert run.status == results.FINISHED and run.sound
  assert run.checks == (f"{OLD_PICKLE}: sound: 2 measurements and their losses match "
                        "final.records_sha256",)
  assert run.config["rho"] == 0.05 and run.config["mlp_width"] == 8
  assert run.final["steps"] == 4 and run.final["stopped_because"] == "max_steps"
  assert run.environment["git"]["commit"].startswith("2250650")
  raw = records.read_raw(str(OLD_PICKLE))
  assert run.records.rows == 2 and list(run.records) == list(raw["records"][0])
  assert run.records["step"].tolist() == [0, 2] and run.records["step"].dtype == np.int64
  assert run.records["eigenvalues"].shape == (2, 1)
  assert run.records["eigenvalues"][:, 0].tolist() == [r["eigenvalues"][0] for r in raw["records"]]
  assert run.records["converged"].dtype == bool
  assert run.records["edge_label"].dtype == object
  assert run.records["edge_label"].tolist() == ["SAM-edge", "SAM-edge"]
  assert run.losses.rows == 4 and run.losses["step"].tolist() == [0, 1, 2, 3]
  assert run.losses["loss"].tolist() == raw["losses"]["loss"]
  assert run.evaluations["test_error"].tolist() == [e["test_error"] for e in raw["evaluations"]]


def test_a_tampered_pickle_raises_one_line_and_check_false_reads_it(tmp_path):
  path = tmp_path / "raw.pkl"
  shutil.copy(OLD_PICKLE, path)
  flip_a_measured_float(path)
  with pytest.raises(results.ChecksumError) as e:
    results.load(path)
  message = str(e.value)
  assert message == (f"{path}: its records and losses do not match final.records_sha256 "
                     "(load(..., check=False) reads it anyway)")
  assert isinstance(e.value, results.ResultsError) and isinstance(e.value, ValueError)
  run = results.load(path, check=False)
  assert not run.sound and "UNSOUND" in run.checks[0]
  assert run.name == tmp_path.name                          # raw.pkl: named by its folder
  original = results.load(OLD_PICKLE)
  changed = [k for k in run.records if not np.array_equal(run.records[k], original.records[k])]
  assert len(changed) == 1                                 # the one flipped float, read as it is


def test_unreadable_paths_raise_results_error(tmp_path):
  with pytest.raises(results.ResultsError, match="no such file or folder"):
    results.load(tmp_path / "missing.pkl")
  cut = tmp_path / "cut.pkl"
  cut.write_bytes(OLD_PICKLE.read_bytes()[:200])
  with pytest.raises(results.ResultsError, match=f"^{re.escape(str(cut))}: cannot be read as a "
                     "pickle"):
    results.load(cut, check=False)
  other = tmp_path / "other.pkl"
  other.write_bytes(pickle.dumps({"config": {}}))
  with pytest.raises(results.ResultsError, match="not a raw pickle of a run"):
    results.load(other)
  (tmp_path / "empty").mkdir()
  with pytest.raises(results.ResultsError, match="holds no raw pickle, command.txt or sweep.json"):
    results.load(tmp_path / "empty")


def test_an_unfinished_run_is_read_as_such(tmp_path):
  raw = records.read_raw(str(OLD_PICKLE))
  raw["final"] = {}
  path = tmp_path / "going.pkl"
  records.write_raw(str(path), raw)
  run = results.load(path)
  assert run.status == results.UNFINISHED and run.sound and run.final == {}
  assert run.name == "going" and "unfinished" in run.checks[0]


# --------------------------------------------------------------------------------------------
# Columns


def test_columns_fill_missing_numbers_with_nan_and_other_values_with_none():
  rows = [{"step": 0, "eigenvalues": [3.0, 1.0], "trace": 5.0, "label": "a", "flag": True,
           "layers": {"d": {"eigenvalue": 1.0}}, "maybe": None},
          {"step": 10, "eigenvalues": [2.0], "label": "b", "flag": False, "maybe": None},
          {"step": 20, "eigenvalues": [1.0, 0.5], "trace": None, "flag": True, "late": 7}]
  c = Columns.of_rows(rows)
  assert c.rows == 3 and list(c) == ["step", "eigenvalues", "trace", "label", "flag", "layers",
                                     "maybe", "late"]
  assert c["step"].dtype == np.int64 and c["step"].tolist() == [0, 10, 20]
  np.testing.assert_array_equal(c["eigenvalues"], [[3.0, 1.0], [2.0, np.nan], [1.0, 0.5]])
  np.testing.assert_array_equal(c["trace"], [5.0, np.nan, np.nan])
  np.testing.assert_array_equal(c["late"], [np.nan, np.nan, 7.0])
  assert c["flag"].dtype == bool and c["flag"].tolist() == [True, False, True]
  assert c["label"].dtype == object and c["label"].tolist() == ["a", "b", None]
  assert c["layers"].tolist() == [{"d": {"eigenvalue": 1.0}}, None, None]
  assert c["maybe"].dtype == object and c["maybe"].tolist() == [None, None, None]
  with pytest.raises(ValueError):
    c["step"][0] = 5                                        # read-only
  assert c == Columns.of_rows(rows) and c != Columns.of_rows(rows[:2])
  assert c != Columns.of_rows([*rows[:2], {**rows[2], "late": 8}])
  with pytest.raises(KeyError, match="'nope': no such column"):
    c["nope"]


def test_columns_of_per_step_lists_keep_their_shape():
  c = Columns.of_lists({"step": [0, 1], "sigma": [[[1.0, 0.0], [0.0, 1.0]]] * 2, "seconds": 3.5})
  assert c.rows == 2 and c["sigma"].shape == (2, 2, 2) and c["seconds"].shape == ()
  np.testing.assert_array_equal(column([MISSING, [1, 2]]), [[np.nan, np.nan], [1.0, 2.0]])
  assert column([1, 2]).dtype == np.int64 and column([1, None]).dtype == np.float64
  assert Columns.of_lists(None).rows == 0


# --------------------------------------------------------------------------------------------
# Sweep folders


def test_a_sweep_keeps_its_order_and_marks_pending_runs(tmp_path):
  """sweep.json plans 4 runs: one finished, one folder with only command.txt, one without a
  folder (another shard's), one with a pickle whose run is still going; plus a folder it does
  not list."""
  sweep = tmp_path / "sw"
  sweep.mkdir()
  plan = {"entry": "image_classification", "aggregate": "product",
          "axes": [["rho", ["0.05", "0.1"]], ["seed", ["0", "1"]]],
          "runs": ["rho=0.05,seed=0", "rho=0.05,seed=1", "rho=0.1,seed=0", "rho=0.1,seed=1"]}
  (sweep / "sweep.json").write_text(json.dumps(plan))
  write_run_folder(sweep / "rho=0.05,seed=0", OLD_PICKLE, rho="0.05", seed="0")
  write_run_folder(sweep / "rho=0.05,seed=1", None, rho="0.05", seed="1")
  raw = records.read_raw(str(OLD_PICKLE))
  raw["final"] = {}
  write_run_folder(sweep / "rho=0.1,seed=1", None, rho="0.1", seed="1")
  records.write_raw(str(sweep / "rho=0.1,seed=1" / "raw.pkl"), raw)
  write_run_folder(sweep / "rho=0.2,seed=0", OLD_PICKLE, rho="0.2", seed="0")
  s = results.load(sweep)
  assert isinstance(s, results.Sweep)
  assert s.entry == "image_classification" and s.aggregate == "product"
  assert s.axes == {"rho": ("0.05", "0.1"), "seed": ("0", "1")}
  assert [r.name for r in s] == [*plan["runs"], "rho=0.2,seed=0"]
  assert [r.status for r in s] == ["finished", "pending", "pending", "unfinished", "finished"]
  assert [r.values for r in s] == [{"rho": "0.05", "seed": "0"}, {"rho": "0.05", "seed": "1"},
                                   {"rho": "0.1", "seed": "0"}, {"rho": "0.1", "seed": "1"},
                                   {"rho": "0.2", "seed": "0"}]
  assert s["rho=0.1,seed=0"].path == str(sweep / "rho=0.1,seed=0")
  assert s.value(s["rho=0.1,seed=0"], "rho") == 0.1                  # pending: as typed
  assert s.value(s["rho=0.2,seed=0"], "rho") == 0.05                 # parsed: its config's
  assert s["rho=0.05,seed=1"].records.rows == 0 and len(s) == 5
  assert repr(s).endswith("5 runs over rho, seed; 2 finished, 1 unfinished, 2 pending)")


def test_a_run_folder_whose_pickle_was_deleted_after_done_json_is_unsound(tmp_path):
  folder = tmp_path / "run"
  write_run_folder(folder, None, rho="0.05")
  (folder / "done.json").write_text(json.dumps({"exit_code": 0, "final": {},
                                                "pickle_sha256": "0" * 64}))
  with pytest.raises(results.ChecksumError,
                     match=re.escape(f"done.json: its pickle {folder}/raw.pkl is missing")):
    results.load(folder)
  run = results.load(folder, check=False)
  assert run.status == results.PENDING and not run.sound


# --------------------------------------------------------------------------------------------
# pandas


def test_to_pandas_says_how_to_get_pandas(monkeypatch):
  monkeypatch.setitem(sys.modules, "pandas", None)           # `import pandas` fails
  run = results.load(OLD_PICKLE)
  with pytest.raises(ImportError, match="pip install pandas"):
    run.to_pandas()
  with pytest.raises(ValueError, match="records, evaluations, losses"):
    run.to_pandas("final")


def test_to_pandas(tmp_path):
  pytest.importorskip("pandas")
  run = results.load(OLD_PICKLE)
  frame = run.to_pandas()
  assert len(frame) == 2 and "eigenvalues[0]" in frame.columns
  assert frame["eigenvalues[0]"].tolist() == run.records["eigenvalues"][:, 0].tolist()
  assert run.to_pandas("losses")["loss"].tolist() == run.losses["loss"].tolist()
  sweep = tmp_path / "sw"
  sweep.mkdir()
  (sweep / "sweep.json").write_text(json.dumps({
      "entry": "image_classification", "aggregate": "product", "axes": [["seed", ["0", "1"]]],
      "runs": ["seed=0", "seed=1"]}))
  write_run_folder(sweep / "seed=0", OLD_PICKLE, seed="0")
  s = results.load(sweep)
  runs = s.to_pandas()
  assert runs["run"].tolist() == ["seed=0", "seed=1"]
  assert runs["status"].tolist() == ["finished", "pending"]
  assert runs["seed"].tolist() == [0, 1] and runs["steps"].iloc[0] == 4
  losses = s.to_pandas("losses")
  assert list(losses.columns[:2]) == ["run", "seed"] and len(losses) == 4


# --------------------------------------------------------------------------------------------
# The tiny sweep of conftest (real MNIST, today's code)


@pytest.mark.slow
def test_reads_the_tiny_sweep_and_its_run_folders(tiny_sweep):
  s = results.load(tiny_sweep)
  plan = json.loads((tiny_sweep / "sweep.json").read_text())
  assert s.axes == TINY_AXES and [r.name for r in s] == plan["runs"]
  for run in s:
    assert run.status == results.FINISHED and run.sound
    assert run.values == {a: str(run.config[a]) for a in TINY_AXES}
    assert [c.split(": ")[0] for c in run.checks] == [
        str(tiny_sweep / run.name / f) for f in ("raw.pkl", "params.npz", "done.json")]
    assert run.records["step"].tolist() == [0, 10]
    assert run.records["eigenvalues"].shape == (2, 1) and run.losses.rows == 20
  folder = tiny_sweep / plan["runs"][0]
  one = results.load(folder)
  assert one.name == plan["runs"][0] and one.values == {}
  assert one.records == s[one.name].records and one.losses == s[one.name].losses
  assert results.load(folder / "raw.pkl").checks == one.checks[:1]


@pytest.mark.slow
def test_a_damaged_parameters_file_fails_the_run_folder(tiny_sweep, tmp_path):
  folder = tmp_path / "run"
  shutil.copytree(tiny_sweep / "mlp_width=4,batch_size=50,seed=0", folder,
                  ignore=shutil.ignore_patterns("checkpoints"))
  data = bytearray((folder / "params.npz").read_bytes())
  data[len(data) // 3] ^= 0x01
  (folder / "params.npz").write_bytes(bytes(data))
  with pytest.raises(results.ChecksumError, match=f"^{re.escape(str(folder))}/params.npz: "):
    results.load(folder)
  run = results.load(folder, check=False)
  assert not run.sound and run.records.rows == 2


def docs_example() -> str:
  """The code of docs/results.md's example (the python block under "## Example")."""
  page = (REPO / "docs" / "results.md").read_text()
  section = page[page.index("## Example: λ1/edge against ρ"):]
  return re.search(r"```python\n(.*?)```", section, re.S).group(1)


@pytest.mark.slow
def test_the_docs_example_runs_and_matches_summary_csv(tiny_sweep, tmp_path, monkeypatch):
  """The example, on the tiny sweep with its width axis in place of ρ, gives each finished run's
  median_lambda1_over_edge of summary.csv."""
  pytest.importorskip("matplotlib")
  monkeypatch.setenv("MPLBACKEND", "Agg")
  monkeypatch.chdir(tmp_path)
  code = docs_example()
  assert '"studies/rho"' in code and 'run.config["rho"]' in code
  code = code.replace('"studies/rho"', repr(str(tiny_sweep))).replace('"rho"', '"mlp_width"')
  namespace: dict = {}
  exec(compile(code, "docs/results.md", "exec"), namespace)  # pylint: disable=exec-used
  assert (tmp_path / "lambda1_over_edge_vs_rho.pdf").stat().st_size > 0
  with open(tiny_sweep / "summary.csv", encoding="utf-8") as f:
    table = {row["run"]: row for row in csv.DictReader(f)}
  names = [r.name for r in results.load(tiny_sweep) if r.status == "finished"]
  assert namespace["rho"] == [int(table[n]["mlp_width"]) for n in names]
  assert namespace["ratio"] == pytest.approx(
      [float(table[n]["median_lambda1_over_edge"]) for n in names], rel=1e-12)
