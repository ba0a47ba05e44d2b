"""Runs that end early keep their work: SIGKILL, SIGINT, SIGTERM and divergence."""

import os
import pickle
import signal
import subprocess
import sys
import time

import pytest

from tests.helpers import REPO
from tests.helpers import TINY_TRANSFORMER as TINY

pytestmark = pytest.mark.slow       # every test here runs whole experiments

OUTPUTS = {"eigs_curve_output": "eigs.pdf", "eigs_se_only_output": "se.pdf",
           "alignment_curve_output": "a.pdf", "loss_curve_output": "ell.pdf",
           "raw_data_output": "raw.pkl"}


def start(corpus, tmp_path, *extra):
  args = [sys.executable, "-u", "-m", "transformer", f"--training_data={corpus}", *TINY, *extra]
  args += [f"--{flag}={tmp_path / name}" for flag, name in OUTPUTS.items()]
  return subprocess.Popen(args, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          text=True, env={**os.environ, "JAX_PLATFORMS": "cpu"})


def wait_for_lines(proc, prefix, count, timeout=180):
  """Reads stdout until `count` lines start with `prefix`; returns what was read."""
  seen, lines, deadline = 0, [], time.time() + timeout
  while seen < count:
    assert time.time() < deadline, "timed out:\n" + "".join(lines)
    line = proc.stdout.readline()
    assert line, "process ended early:\n" + "".join(lines) + proc.stderr.read()
    lines.append(line)
    seen += line.startswith(prefix)
  return lines


def test_sigkill_after_the_second_measurement_keeps_both_records(corpus, tmp_path):
  proc = start(corpus, tmp_path, "--measure_every_steps=1", "--time_limit_in_hours=1")
  try:
    wait_for_lines(proc, "measure step", 3)     # the pickle of measurement 2 is written before
    proc.send_signal(signal.SIGKILL)            # the loop goes on to measurement 3
  finally:
    proc.kill()
    proc.wait()
  raw = pickle.loads((tmp_path / "raw.pkl").read_bytes())
  assert len(raw["records"]) >= 2
  for r in raw["records"][:2]:
    assert len(r["eigenvalues"]) == 1 and r["hvps"] >= 1 and "sg_alignment" in r


@pytest.mark.parametrize("sig, code, reason", [(signal.SIGINT, 130, "interrupted"),
                                               (signal.SIGTERM, 143, "terminated")])
def test_signal_mid_run_writes_every_output(corpus, tmp_path, sig, code, reason):
  proc = start(corpus, tmp_path, "--measure_every_steps=2", "--time_limit_in_hours=1")
  try:
    wait_for_lines(proc, "measure step", 2)
    proc.send_signal(sig)
    out, err = proc.communicate(timeout=120)
  finally:
    proc.kill()
  assert proc.returncode == code, err
  assert f"stopped ({reason})" in out and str(tmp_path / "raw.pkl") in out
  for name in OUTPUTS.values():
    assert (tmp_path / name).stat().st_size > 0
  raw = pickle.loads((tmp_path / "raw.pkl").read_bytes())
  assert raw["final"]["stopped_because"] == reason and len(raw["records"]) >= 2
  assert "test_loss" in raw["final"]


def test_divergence_is_a_result(corpus, tmp_path):
  proc = start(corpus, tmp_path, "--measure_every_steps=1", "--step_size=1e6",
               "--time_limit_in_hours=1", "--max_steps=50")
  out, err = proc.communicate(timeout=180)
  assert proc.returncode == 0, err
  assert "diverged" in out and "at step" in out
  raw = pickle.loads((tmp_path / "raw.pkl").read_bytes())
  assert raw["final"]["stopped_because"] == "diverged"
  assert raw["final"]["steps"] < 50 and len(raw["records"]) >= 1
  for name in OUTPUTS.values():
    if name.endswith(".pdf"):
      assert (tmp_path / name).read_bytes().startswith(b"%PDF")


def test_a_failed_write_does_not_stop_training(corpus, tmp_path):
  """The output folder vanishing mid-run costs those writes, not the run (which then ends with
  exit code 74, not 0)."""
  out = tmp_path / "out"
  out.mkdir()
  args = [sys.executable, "-u", "-m", "transformer", f"--training_data={corpus}", *TINY,
          "--measure_every_steps=1", "--max_steps=4"]
  args += [f"--{flag}={out / name}" for flag, name in OUTPUTS.items()]
  proc = subprocess.Popen(args, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          text=True, env={**os.environ, "JAX_PLATFORMS": "cpu"})
  try:
    wait_for_lines(proc, "measure step", 1)
    for p in out.iterdir():
      p.unlink()
    out.rmdir()
    stdout, stderr = proc.communicate(timeout=120)
  finally:
    proc.kill()
  assert proc.returncode == 74, stderr          # the final outputs could not be written
  assert "test_loss:" in stdout and "could not write" in stderr
  assert "error: the newest complete state on disk: " in stdout
