"""`python -m sam_edge.sweep`: grids, names and shards; a 2x2 sweep of tiny transformer runs end to
end, skipped when repeated, resumed after a kill; bad values and owned flags refused up front."""

import csv
import hashlib
import json
import math
import os
import pickle
import shlex
import shutil
import signal
import subprocess
import sys
import threading
import time

import pytest

import transformer
from sam_edge import compare, records, sweep, verify
from sam_edge.run import run_folder
from sam_edge.studies import commands, grid, runner
from tests.helpers import REPO, flip_a_measured_float
from tests.helpers import TINY_TRANSFORMER as TINY

NAMES = ["rho=0,seed=0", "rho=0,seed=1", "rho=0.05,seed=0", "rho=0.05,seed=1"]
PDFS = ["lambda1_over_edge.pdf", "loss_curves.pdf", "metric_vs_rho.pdf", "phase.pdf"]


def run_args(corpus, *extra):
  return [f"--training_data={corpus}", *TINY, "--max_steps=3", "--measure_every_steps=1", *extra]


def two_by_two(out, corpus, *own):
  return [f"--out={out}", "--phase_axes=rho,seed", *own, "--", "transformer",
          *run_args(corpus, "--rho=0,0.05", "--seed=0,1")]


# ---------------------------------------------------------------------------------------------
# The grid: pure functions.


def test_product_and_zip_order_names_and_pass_through():
  axes, runs = grid.expand(["--a=1,2", "--x=7", "--b=u,v,w"])
  assert [(a.flag, a.values) for a in axes] == [("a", ("1", "2")), ("b", ("u", "v", "w"))]
  assert [r.name for r in runs] == ["a=1,b=u", "a=1,b=v", "a=1,b=w", "a=2,b=u", "a=2,b=v",
                                    "a=2,b=w"]
  assert runs[4].args == ("--a=2", "--x=7", "--b=v")
  _, zipped = grid.expand(["--a=1,2", "--b=u,v"], "zip")
  assert [r.name for r in zipped] == ["a=1,b=u", "a=2,b=v"]
  _, single = grid.expand(["--x=7"])
  assert [(r.name, r.args) for r in single] == [("run", ("--x=7",))]


def test_names_are_safe_and_escaped_commas_are_literal():
  _, runs = grid.expand(["--test_data=/d/a.txt,b c", r"--label=x\,y"])
  assert [r.name for r in runs] == ["test_data=%2Fd%2Fa.txt", "test_data=b%20c"]
  assert runs[0].args == ("--test_data=/d/a.txt", "--label=x,y")
  assert all("/" not in r.name for r in runs)
  long = grid.run_name((("flag", "v" * 400),))
  assert len(long) <= grid.MAX_NAME_BYTES and long == grid.run_name((("flag", "v" * 400),))


@pytest.mark.parametrize("args, aggregate, message", [
    (["--a=1,2", "--b=1,2,3"], "zip", "equal length"),
    (["--a=1,1"], "product", "repeats a value"),
    (["--a=1,2", "--a=3,4"], "product", "swept twice"),
    (["--a=1,2", "--a=3"], "product", "both swept and given"),
])
def test_grid_errors(args, aggregate, message):
  with pytest.raises(grid.GridError, match=message):
    grid.expand(args, aggregate)


def test_shards_partition_any_run_list():
  _, runs = grid.expand(["--a=1,2,3", "--b=1,2,3,4,5"])
  for n in (1, 2, 3, 7, 20):
    parts = [grid.shard(runs, i, n) for i in range(n)]
    names = [r.name for part in parts for r in part]
    assert sorted(names) == sorted(r.name for r in runs) and len(names) == len(runs)
  assert grid.parse_shard("1/2") == (1, 2)
  for bad in ("2/2", "-1/2", "0/0", "1", "a/b"):
    with pytest.raises(grid.GridError):
      grid.parse_shard(bad)


def test_run_args_put_every_output_in_the_folder(tmp_path):
  spec = grid.expand(["--rho=0,1", "--tensorboard_dir=/tb"])[1][1]
  args = commands.run_args(spec, str(tmp_path / spec.name), transformer.FLAGS)
  outputs = [n for n in transformer.FLAGS if n.endswith("_output")]
  assert outputs and len(outputs) == len(commands.output_files(transformer.FLAGS))
  for name in outputs + ["checkpoint_dir"]:
    (value,) = [a.split("=", 1)[1] for a in args if a.startswith(f"--{name}=")]
    assert os.path.dirname(value) == str(tmp_path / "rho=1")
  assert "--resume" in args and "--tensorboard_dir=/tb/rho=1" in args
  # The comparison of commands ignores the interpreter, the folder and the tensorboard folder.
  other = commands.run_args(spec, "/elsewhere/rho=1", transformer.FLAGS)
  other[other.index("--tensorboard_dir=/tb/rho=1")] = "--tensorboard_dir=/tb2/rho=1"
  assert (commands.comparable(["python3", "-m", "transformer", *args], transformer.FLAGS)
          == commands.comparable(["/venv/python", "-m", "transformer", *other],
                                 transformer.FLAGS))


# ---------------------------------------------------------------------------------------------
# A 2x2 sweep of tiny transformer runs (one per module; later tests read it).


@pytest.fixture(scope="module")
def swept(corpus, tmp_path_factory):
  out = tmp_path_factory.mktemp("sweep") / "sw"
  return out, sweep.main(two_by_two(out, corpus))          # the runs are processes of their own


@pytest.mark.slow
def test_two_by_two_end_to_end(swept):
  out, code = swept
  assert code == 0
  assert sorted(p.name for p in out.iterdir() if p.is_dir()) == NAMES
  for name in NAMES:
    folder = out / name
    assert {"command.txt", "log.txt", "done.json", "raw.pkl", "checkpoints"} <= set(
        os.listdir(folder))
    argv = run_folder.read_command(str(folder))
    assert argv[1:3] == ["-m", "transformer"] and "--resume" in argv
    assert f"--checkpoint_dir={folder / 'checkpoints'}" in argv
    assert json.loads((folder / "done.json").read_text())["exit_code"] == 0
    for pdf in ("eigs.pdf", "eigs_se_only.pdf", "a.pdf", "ell.pdf"):
      assert (folder / pdf).read_bytes().startswith(b"%PDF")
  with open(out / "summary.csv", newline="") as f:
    rows = list(csv.DictReader(f))
  assert [r["run"] for r in rows] == NAMES
  assert list(rows[0]) == ["run", "rho", "seed", "steps", "stopped_because", "test_error",
                           "test_loss", "final_lambda1", "median_lambda1_over_edge", "diverged",
                           "final_train_loss",
                           "source"]
  for row in rows:
    raw = pickle.loads((out / row["run"] / "raw.pkl").read_bytes())
    assert row["rho"] == row["run"].split(",")[0].split("=")[1]
    assert float(row["rho"]) == raw["config"]["rho"] and int(row["seed"]) == raw["config"]["seed"]
    assert (row["steps"], row["stopped_because"], row["diverged"]) == ("3", "max_steps", "false")
    assert float(row["test_error"]) == raw["final"]["test_error"]     # next-character error
    assert float(row["test_loss"]) == raw["final"]["test_loss"]
    assert float(row["final_lambda1"]) == raw["records"][-1]["eigenvalues"][0]
    second_half = [r for r in raw["records"] if r["step"] >= 3 / 2]          # the step-2 record
    edge = [r.get("edge", r["sam_edge"]) for r in second_half]
    assert float(row["median_lambda1_over_edge"]) == pytest.approx(
        second_half[0]["eigenvalues"][0] / edge[0], rel=1e-12)
  for pdf in PDFS:
    assert (out / pdf).read_bytes().startswith(b"%PDF")
  assert not (out / "metric_vs_seed.pdf").exists()


@pytest.mark.slow
def test_same_command_again_skips_all_four(swept, corpus, capsys):
  out, _ = swept
  logs = {n: (out / n / "log.txt").read_bytes() for n in NAMES}
  assert sweep.main(two_by_two(out, corpus)) == 0
  printed = capsys.readouterr().out
  assert printed.count("finished already") == 4 and "running" not in printed
  for name in NAMES:
    assert f"{name}: finished already (max_steps after 3 steps" in printed
    assert (out / name / "log.txt").read_bytes() == logs[name]


@pytest.mark.slow
def test_a_different_command_on_the_same_folders_is_refused(swept, corpus, capsys):
  out, _ = swept
  args = two_by_two(out, corpus)
  args[args.index("--max_steps=3")] = "--max_steps=4"
  assert sweep.main(args) == 2
  err = capsys.readouterr().err.strip().splitlines()
  assert len(err) == 4 and all("holds a run of another command" in line for line in err)


@pytest.mark.slow
def test_compare_mixes_the_sweep_with_a_reference_raw_txt(swept, tmp_path, capsys):
  out, _ = swept
  lines = ["0.0 5.0 20.0 20.0 1.0 4.0 0.1 0.1", "1.0 7.0 20.0 20.0 1.0 3.0 0.1 0.1",
           "2.0 9.0 20.0 20.0 1.0 2.0 0.1 0.1"]
  (tmp_path / "raw.txt").write_text("\n".join(lines) + "\n")
  assert compare.main([str(out), str(tmp_path / "raw.txt"), f"--out={tmp_path / 'cmp'}"]) == 0
  with open(tmp_path / "cmp" / "summary.csv", newline="") as f:
    rows = list(csv.DictReader(f))
  assert [r["run"] for r in rows] == NAMES + [tmp_path.name]
  ref = rows[-1]
  assert (ref["rho"], ref["seed"], ref["final_lambda1"]) == ("0", "", "9.0")   # 0.0 inferred
  assert float(ref["median_lambda1_over_edge"]) == pytest.approx(8.0 / 20.0)   # t >= 1: 7, 9
  assert (tmp_path / "cmp" / "lambda1_over_edge.pdf").read_bytes().startswith(b"%PDF")
  capsys.readouterr()


@pytest.mark.slow
def test_a_rerun_redoes_a_finished_run_whose_pickle_changed(swept, corpus, tmp_path, capsys):
  out, _ = swept
  copy = tmp_path / "sw"                                   # the other tests read the original
  shutil.copytree(out, copy)
  name = NAMES[1]
  folder = copy / name
  done = json.loads((folder / "done.json").read_text())
  assert done["pickle_sha256"] == records.file_sha256(str(folder / "raw.pkl"))
  assert done["final"]["records_sha256"]
  assert verify.main([str(copy)]) == 0
  lines = capsys.readouterr().out.splitlines()  # per run: pickle, params, done.json, step 3
  assert len(lines) == 4 * 4 + 1 and lines[-1] == "verify: 16 of 16 items sound"
  lost = copy / NAMES[2] / "params.npz"                    # and another run's parameters lost
  lost.unlink()
  flip_a_measured_float(folder / "raw.pkl")
  assert verify.main([str(copy)]) == 1
  unsound = [line for line in capsys.readouterr().out.splitlines() if "UNSOUND:" in line]
  assert [line.split(": UNSOUND:")[0] for line in unsound[:2]] == [str(folder / "raw.pkl"),
                                                                  str(folder / "done.json")]
  assert sweep.main(two_by_two(copy, corpus)) == 0
  printed = capsys.readouterr().out
  assert printed.count("finished already") == 2
  assert (f"{name}: finished earlier, but its pickle {folder / 'raw.pkl'} no longer matches the "
          "pickle_sha256 in done.json: running it again") in printed
  assert (f"{NAMES[2]}: finished earlier, but its parameters file {lost} is missing: running it "
          "again") in printed
  assert lost.is_file()
  assert "resuming from the checkpoint of step 3" in (folder / "log.txt").read_text()
  raw = records.read_raw(str(folder / "raw.pkl"))
  assert records.raw_status(raw)[0] and raw["final"]["steps"] == 3
  assert verify.main([str(copy)]) == 0


# ---------------------------------------------------------------------------------------------
# Shards, dry runs and checks before anything runs (no training).


def test_dry_run_shards_partition_the_runs(tmp_path, corpus, capsys):
  out = tmp_path / "sw"
  lists = []
  for own in ([], ["--shard=0/2"], ["--shard=1/2"]):
    assert sweep.main(two_by_two(out, corpus, "--dry_run", *own)) == 0
    lists.append(capsys.readouterr().out.strip().splitlines())
  everything, first, second = lists
  assert len(everything) == 4 and not set(first) & set(second)
  assert sorted(first + second) == sorted(everything)
  folders = [a.split("=", 1)[1] for c in everything for a in shlex.split(c)
             if a.startswith("--checkpoint_dir=")]
  assert [os.path.basename(os.path.dirname(f)) for f in folders] == NAMES
  assert not out.exists()


def test_bad_value_on_one_axis_fails_before_any_run(tmp_path, corpus, capsys):
  out = tmp_path / "sw"
  code = sweep.main([f"--out={out}", "--", "transformer",
                     *run_args(corpus, "--rho=0.1,-1", "--seed=0,1")])
  err = capsys.readouterr().err.strip().splitlines()
  assert code == 2 and len(err) == 2
  assert err[0].startswith("sweep: error: run rho=-1,seed=0: --rho must be")
  assert err[1].startswith("sweep: error: run rho=-1,seed=1: --rho must be")
  assert not out.exists()


@pytest.mark.parametrize("flag", sorted(commands.owned_flags(transformer.FLAGS)) + ["noresume"])
def test_an_output_flag_given_by_the_user_is_a_clear_error(tmp_path, corpus, capsys, flag):
  arg = f"--{flag}" if flag in ("resume", "noresume") else f"--{flag}={tmp_path / 'x'}"
  code = sweep.main([f"--out={tmp_path / 'sw'}", "--", "transformer",
                     *run_args(corpus, "--rho=0,0.1", arg)])
  err = capsys.readouterr().err.strip().splitlines()
  assert code == 2 and len(err) == 1
  assert err[0].startswith(f"sweep: error: {arg}: the sweep sets --{flag.removeprefix('no')} "
                           "itself")
  assert not (tmp_path / "sw").exists()


@pytest.mark.parametrize("argv, message", [
    (["--out=OUT", "--", "--rho=1"], "name the entry point"),
    (["--out=OUT", "--", "mnist", "--rho=1"], "unknown entry point"),
    (["--out=OUT", "--shard=2/2", "--", "transformer", "--rho=0,1"], "--shard=2/2"),
    (["--out=OUT", "--phase_axes=rho,width", "--", "transformer", "--rho=0,1"],
     "width is not a swept axis"),
    (["--out=OUT", "--", "transformer", "--rho=0,1", "--shard=0/2"], "put it before `--`"),
])
def test_sweep_usage_errors_are_one_line(tmp_path, capsys, argv, message):
  argv = [a.replace("OUT", str(tmp_path / "sw")) for a in argv]
  assert sweep.main(argv) == 2
  err = capsys.readouterr().err.strip().splitlines()
  assert len(err) == 1 and message in err[0], err


# ---------------------------------------------------------------------------------------------
# Signals, locks and resumption.


@pytest.mark.slow
def test_runner_forwards_sigterm_to_the_child_and_stops(tmp_path):
  child = ("import signal, sys, time\n"
           "signal.signal(signal.SIGTERM, lambda *a: (print('child got SIGTERM', flush=True),"
           " sys.exit(143)))\n"
           "print('child started', flush=True)\n"
           "time.sleep(60)\n")
  folder = tmp_path / "run"
  timer = threading.Timer(1.0, lambda: os.kill(os.getpid(), signal.SIGTERM))
  with runner.Runner(log=lambda line: None) as r:
    timer.start()
    outcome = r.run("run", str(folder), [sys.executable, "-c", child], None)
  timer.join()
  assert (outcome.status, outcome.code, r.stopped_by) == ("stopped", 143, signal.SIGTERM)
  log = (folder / "log.txt").read_text()
  assert "child got SIGTERM" in log and "--- sweep: exit code 143" in log
  assert not (folder / "done.json").exists()
  # A finished command is recorded once and then skipped.
  with runner.Runner(log=lambda line: None) as r:
    assert r.run("run", str(folder), [sys.executable, "-c", "pass"], None).status == "done"
    assert r.run("run", str(folder), [sys.executable, "-c", "raise SystemExit(1)"],
                 None).status == "skipped"
  assert json.loads((folder / "done.json").read_text())["exit_code"] == 0


@pytest.mark.slow
def test_a_finished_run_whose_pickle_is_gone_or_changed_runs_again(tmp_path):
  folder, raw = tmp_path / "run", tmp_path / "run" / "raw.pkl"
  written = pickle.dumps({"final": {"steps": 1}})
  write = [sys.executable, "-c", f"open({str(raw)!r}, 'wb').write({written!r})"]
  said = []
  with runner.Runner(log=said.append) as r:
    assert r.run("run", str(folder), write, str(raw)).status == "done"
    assert r.run("run", str(folder), write, str(raw)).status == "skipped"
    done = json.loads((folder / "done.json").read_text())
    assert done["pickle_sha256"] == hashlib.sha256(written).hexdigest()
    assert done["final"] == {"steps": 1}
    raw.write_bytes(pickle.dumps({"final": {"steps": 2}}))
    assert r.run("run", str(folder), write, str(raw)).status == "done"
    assert raw.read_bytes() == written
    raw.unlink()
    assert r.run("run", str(folder), write, str(raw)).status == "done"
    assert r.run("run", str(folder), write, str(raw)).status == "skipped"
  assert [line.split(": running")[0] for line in said if "finished earlier" in line] == [
      f"run: finished earlier, but its pickle {raw} no longer matches the pickle_sha256 in "
      "done.json", f"run: finished earlier, but its pickle {raw} is missing"]


@pytest.mark.slow
def test_a_finished_run_whose_params_file_is_gone_or_damaged_runs_again(tmp_path):
  folder = tmp_path / "run"
  raw, params = folder / "raw.pkl", folder / "params.npz"
  written = pickle.dumps({"final": {"steps": 1}})
  code = (f"open({str(raw)!r}, 'wb').write({written!r})\n"
          "from sam_edge.run import params_file\nimport numpy as np\n"
          f"params_file.write({str(params)!r}, 'transformer', 1, {{}}, {{'w': np.ones(3)}}, {{}})")
  write = [sys.executable, "-c", code]
  said = []
  with runner.Runner(log=said.append) as r:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    run = lambda: r.run("run", str(folder), write, str(raw), env,
                        params_path=str(params)).status
    assert run() == "done" and run() == "skipped"
    params.unlink()
    assert run() == "done" and params.is_file() and run() == "skipped"
    params.write_bytes(params.read_bytes()[:-7])
    assert run() == "done" and run() == "skipped"
  again = [line.split(": running")[0] for line in said if "finished earlier" in line]
  assert again[0] == f"run: finished earlier, but its parameters file {params} is missing"
  assert again[1].startswith(f"run: finished earlier, but its parameters file {params}: ")
  assert len(again) == 2


@pytest.mark.slow
def test_killed_sweep_resumes_and_finishes(tmp_path, corpus):
  out = tmp_path / "sw"
  argv = [sys.executable, "-m", "sam_edge.sweep", f"--out={out}", "--", "transformer",
          f"--training_data={corpus}", *TINY, "--max_steps=4000", "--measure_every_steps=2000",
          "--checkpoint_every_minutes=0.005"]
  folder = out / "run"                          # no axes: one run
  first = subprocess.Popen(argv, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
  deadline = time.monotonic() + 300
  while not any(p.name.isdigit() and int(p.name) > 0
                for p in (folder / "checkpoints").glob("*")) and first.poll() is None:
    assert time.monotonic() < deadline
    time.sleep(0.05)
  first.kill()                                  # SIGKILL: the child gets SIGTERM from Linux
  first.wait()
  assert first.returncode == -signal.SIGKILL
  assert not (folder / "done.json").exists()
  second = subprocess.run(argv, cwd=REPO, capture_output=True, text=True, timeout=600)
  assert second.returncode == 0, second.stdout + second.stderr
  log = (folder / "log.txt").read_text()
  assert log.count("--- sweep: started") == 2
  assert "stopped (terminated)" in log.split("--- sweep: started")[1]
  resumed_at = int(log.split("resuming from the checkpoint of step ")[1].split()[0])
  assert 0 < resumed_at < 4000
  raw = pickle.loads((folder / "raw.pkl").read_bytes())
  assert raw["final"]["steps"] == 4000 and [r["step"] for r in raw["records"]] == [0, 2000]
  assert all(math.isfinite(r["eigenvalues"][0]) for r in raw["records"])
  assert json.loads((folder / "done.json").read_text())["final"]["steps"] == 4000
