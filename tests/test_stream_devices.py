"""Streamed runs in processes of their own: two jax.distributed processes (each reading only its
half of every batch) and one process with four devices equal one process on one device; a run
killed mid-run and resumed equals the run never stopped."""

import pickle
import signal
import subprocess
import sys
import time

import pytest

from tests.helpers import REPO
from tests.test_devices import NO_PDFS, assert_same_run, env, run_two_processes
from tests.test_stream import write_jpegs

pytestmark = pytest.mark.slow       # processes, whole experiments

STREAMED = ["--mlp_width=16", "--mlp_depth=2", "--batch_size=8", "--max_steps=6", "--rho=0.05",
            "--data_pipeline=stream", "--data_workers=0", "--measure_every_steps=3",
            "--eval_every_steps=3", "--lanczos_max_steps=10", "--num_principal_components=1",
            "--measure_examples=16"]


def command(folder, raw, *extra) -> list[str]:
  return [sys.executable, "tests/stream_entry.py", str(folder / "train.array_record"),
          str(folder / "test.array_record"), *STREAMED, *NO_PDFS, f"--raw_data_output={raw}",
          *extra]


def test_two_processes_and_four_devices_give_the_one_process_result(tmp_path):
  write_jpegs(tmp_path / "train.array_record", 64, (28, 28), seed=1)
  write_jpegs(tmp_path / "test.array_record", 24, (28, 28), seed=2)
  one = subprocess.run(command(tmp_path, tmp_path / "one.pkl"), cwd=REPO, env=env(1),
                       capture_output=True, text=True, timeout=400)
  assert one.returncode == 0, one.stderr[-3000:]
  run_two_processes(command(tmp_path, tmp_path / "two.pkl"))
  four = subprocess.run(command(tmp_path, tmp_path / "four.pkl"), cwd=REPO, env=env(4),
                        capture_output=True, text=True, timeout=400)
  assert four.returncode == 0, four.stderr[-3000:]
  a = pickle.loads((tmp_path / "one.pkl").read_bytes())
  for name, processes, devices in (("two", 2, 2), ("four", 1, 4)):
    b = pickle.loads((tmp_path / f"{name}.pkl").read_bytes())
    assert b["environment"]["process_count"] == processes
    assert b["environment"]["mesh"]["devices"] == devices
    assert_same_run(a, b)
    assert [e["test_error"] for e in a["evaluations"]] == [e["test_error"]
                                                           for e in b["evaluations"]]


def test_a_streamed_run_killed_mid_run_resumes_to_the_uninterrupted_result(tmp_path):
  """SIGKILL at whatever step the run has reached once a checkpoint exists (checkpoints every few
  milliseconds), then --resume: the records, evaluations and losses of the run never stopped."""
  write_jpegs(tmp_path / "train.array_record", 64, (28, 28), seed=1)
  write_jpegs(tmp_path / "test.array_record", 24, (28, 28), seed=2)
  long = ["--max_steps=300", "--measure_every_steps=60", "--eval_every_steps=50"]

  def started(raw, folder, *extra):
    return subprocess.Popen(command(tmp_path, raw, *long, f"--checkpoint_dir={folder}", *extra),
                            cwd=REPO, env=env(1), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)

  whole = started(tmp_path / "whole.pkl", tmp_path / "ck_whole")
  killed = started(tmp_path / "killed.pkl", tmp_path / "ck", "--checkpoint_every_minutes=0.0002")
  try:
    deadline = time.time() + 300
    while not any(p.name.isdigit() for p in (tmp_path / "ck").glob("*")):
      assert killed.poll() is None and time.time() < deadline
      time.sleep(0.05)
    killed.send_signal(signal.SIGKILL)
    killed.wait(timeout=60)
    assert whole.wait(timeout=400) == 0, whole.stderr.read()[-3000:]
  finally:
    killed.kill()
    whole.kill()
  steps = sorted(int(p.name) for p in (tmp_path / "ck").glob("*") if p.name.isdigit())
  assert steps and steps[-1] < 300
  resumed = subprocess.run(command(tmp_path, tmp_path / "resumed.pkl", *long,
                                   f"--checkpoint_dir={tmp_path / 'ck'}", "--resume"),
                           cwd=REPO, env=env(1), capture_output=True, text=True, timeout=400)
  assert resumed.returncode == 0, resumed.stderr[-3000:]
  assert f"resuming from the checkpoint of step {steps[-1]}" in resumed.stdout
  a = pickle.loads((tmp_path / "whole.pkl").read_bytes())
  b = pickle.loads((tmp_path / "resumed.pkl").read_bytes())
  strip = lambda entries: [{k: v for k, v in e.items() if k not in ("seconds", "time")}
                           for e in entries]
  assert strip(a["records"]) == strip(b["records"]) and len(a["records"]) == 5
  assert strip(a["evaluations"]) == strip(b["evaluations"])
  assert a["losses"] == b["losses"]
