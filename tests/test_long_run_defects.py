"""Defects found by trying the tool as a new user would (issue 9), each kept from coming back:
a failed checkpoint save, a shared checkpoint folder, a corrupted newest checkpoint, signals
before anything is computed, Ctrl-C twice, and the name of the step where a run diverged."""

import math
import os
import pathlib
import pickle
import shutil
import signal
import subprocess
import sys
import time

import pytest

import transformer
from sam_edge.cli import main as cli
from sam_edge.run import locks
from tests.helpers import REPO
from tests.helpers import TINY_TRANSFORMER as TINY

OUTPUTS = {"eigs_curve_output": "eigs.pdf", "eigs_se_only_output": "se.pdf",
           "alignment_curve_output": "a.pdf", "loss_curve_output": "ell.pdf",
           "raw_data_output": "raw.pkl"}
ENV = {**os.environ, "JAX_PLATFORMS": "cpu"}


def outputs(folder: pathlib.Path) -> list[str]:
  return [f"--{flag}={folder / name}" for flag, name in OUTPUTS.items()]


def start(corpus, folder, *extra, model=TINY):
  args = [sys.executable, "-u", "-m", "transformer", f"--training_data={corpus}", *model,
          *outputs(folder), *extra]
  return subprocess.Popen(args, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          text=True, env=ENV)


def read_until(stream, text, timeout=240):
  """Lines of `stream` up to and including the first that holds `text`."""
  lines, deadline = [], time.time() + timeout
  while True:
    assert time.time() < deadline, "timed out:\n" + "".join(lines)
    line = stream.readline()
    assert line, "stream ended before " + repr(text) + ":\n" + "".join(lines)
    lines.append(line)
    if text in line:
      return lines


def no_traceback(err: str) -> None:
  assert "Traceback" not in err, err


# --------------------------------------------------------------------------------------------
# Defect 2: a failed checkpoint save costs that checkpoint, not the run's other outputs


@pytest.mark.slow
def test_checkpoint_folder_replaced_by_a_file_mid_run(corpus, tmp_path):
  ck = tmp_path / "ck"
  proc = start(corpus, tmp_path, f"--checkpoint_dir={ck}", "--checkpoint_every_minutes=0.001",
               "--measure_every_steps=1", "--max_steps=6")
  try:
    read_until(proc.stdout, "measure step 1")
    for _ in range(100):      # the run may recreate the folder between the two calls: retry
      shutil.rmtree(ck, ignore_errors=True)
      try:
        ck.write_text("not a folder any more")
        break
      except IsADirectoryError:
        continue
    out, err = proc.communicate(timeout=240)
  finally:
    proc.kill()
  assert proc.returncode == 74, err        # its final checkpoint could not be written
  assert "warning: could not write the checkpoint" in err
  assert f"the checkpoint of step 6 in {ck} (" in out.split("could not be written: ")[1]
  no_traceback(err)
  assert "test_loss:" in out
  for name in OUTPUTS.values():
    assert (tmp_path / name).stat().st_size > 0, name
  raw = pickle.loads((tmp_path / "raw.pkl").read_bytes())
  assert raw["final"]["stopped_because"] == "max_steps" and "test_loss" in raw["final"]
  assert raw["losses"]["step"] == list(range(6))


# --------------------------------------------------------------------------------------------
# Defect 3: two runs never share a checkpoint folder; a killed run's lock is taken over


@pytest.mark.slow
def test_a_second_run_on_a_busy_checkpoint_folder_is_refused(corpus, tmp_path):
  ck = tmp_path / "ck"
  (tmp_path / "a").mkdir()
  first = start(corpus, tmp_path / "a", f"--checkpoint_dir={ck}", "--measure_every_steps=1",
                "--max_steps=100000")
  try:
    read_until(first.stdout, "measure step 0")
    (tmp_path / "b").mkdir()
    second = subprocess.run(
        [sys.executable, "-m", "transformer", f"--training_data={corpus}", *TINY,
         *outputs(tmp_path / "b"), f"--checkpoint_dir={ck}", "--max_steps=2"],
        cwd=REPO, capture_output=True, text=True, env=ENV, timeout=240)
    lines = [line for line in second.stderr.splitlines() if line.strip()]
    assert second.returncode == 2, second.stderr
    assert len(lines) == 1 and "--checkpoint_dir" in lines[0], lines
    assert f"process {first.pid}" in lines[0] and "in use by another run" in lines[0]
    assert not any((tmp_path / "b").iterdir())
  finally:
    first.send_signal(signal.SIGKILL)
    first.wait()
  # The killed run left its lock behind: it is stale, and the next run takes it over.
  assert (ck / locks.LOCK_NAME).exists()
  third = subprocess.run(
      [sys.executable, "-m", "transformer", f"--training_data={corpus}", *TINY,
       *outputs(tmp_path / "b"), f"--checkpoint_dir={ck}", "--resume", "--max_steps=2"],
      cwd=REPO, capture_output=True, text=True, env=ENV, timeout=240)
  assert third.returncode == 0, third.stderr
  assert not (ck / locks.LOCK_NAME).exists()            # released at the end


def test_lock_file_unit(tmp_path):
  folder = tmp_path / "ck"
  with locks.FolderLock(str(folder)) as lock:
    assert lock.held and locks.problem(str(folder)) is None       # this process holds it
    assert locks.read_owner(str(folder))["pid"] == os.getpid()
  assert not (folder / locks.LOCK_NAME).exists()
  dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                        capture_output=True, text=True).stdout.strip()
  (folder / locks.LOCK_NAME).write_text(
      f'{{"pid": {dead}, "host": "{locks.socket.gethostname()}", "start": "1"}}')
  assert locks.is_stale(locks.read_owner(str(folder)))
  locks.FolderLock(str(folder)).acquire()                        # taken over
  assert locks.read_owner(str(folder))["pid"] == os.getpid()
  (folder / locks.LOCK_NAME).write_text('{"pid": 1, "host": "elsewhere", "start": "1"}')
  reason = locks.problem(str(folder))
  assert reason and "elsewhere" in reason and locks.LOCK_NAME in reason
  with pytest.raises(RuntimeError):
    locks.FolderLock(str(folder)).acquire()


# --------------------------------------------------------------------------------------------
# Defect 4: resume from the newest *sound* checkpoint


def run_in_process(corpus, folder, *extra) -> int:
  folder.mkdir(exist_ok=True)
  argv = [transformer.PROG, f"--training_data={corpus}", *TINY, *outputs(folder), *extra]
  try:
    cli.parse_flags(transformer.FLAGS, argv)
    return transformer.main([])
  except SystemExit as e:
    return e.code


@pytest.fixture(scope="module")
def two_checkpoints(corpus, tmp_path_factory):
  """A checkpoint folder with the steps 2 and 4 of one run."""
  root = tmp_path_factory.mktemp("two_checkpoints")
  ck = root / "ck"
  assert run_in_process(corpus, root / "out", f"--checkpoint_dir={ck}", "--max_steps=2",
                        "--measure_every_steps=2") == 0
  assert run_in_process(corpus, root / "out", f"--checkpoint_dir={ck}", "--max_steps=4",
                        "--measure_every_steps=2", "--resume") == 0
  assert sorted(p.name for p in ck.iterdir() if p.name.isdigit()) == ["2", "4"]
  return ck


def truncate_array_files(step: pathlib.Path) -> None:
  for path in (step / "arrays").rglob("*"):
    if path.is_file() and path.parent.name == "d":
      path.write_bytes(path.read_bytes()[:7])


def flip_bits_across_the_largest_array_file(step: pathlib.Path, bits: int = 8) -> None:
  """Issue 24's damage: `bits` bytes xor 0x40, evenly spread over the largest array file."""
  path = max((p for p in (step / "arrays").rglob("*") if p.is_file()),
             key=lambda p: p.stat().st_size)
  data = bytearray(path.read_bytes())
  for i in range(1, bits + 1):
    data[i * len(data) // (bits + 1)] ^= 0x40
  path.write_bytes(bytes(data))


def flip_a_digit_in_the_meta_file(step: pathlib.Path) -> None:
  """The last digit of the first measured loss, one bit flipped (still valid JSON)."""
  path = step / "meta" / "metadata"
  data = bytearray(path.read_bytes())
  at = data.index(b'"loss": ') + len(b'"loss": ')
  while chr(data[at + 1]) in "0123456789.":
    at += 1
  data[at] ^= 0x01
  path.write_bytes(bytes(data))


CORRUPTIONS = {
    "truncated array files": truncate_array_files,
    "deleted meta file": lambda step: (step / "meta" / "metadata").unlink(),
    "truncated meta file": lambda step: (step / "meta" / "metadata").write_text('{"progr'),
    "missing arrays folder": lambda step: shutil.rmtree(step / "arrays"),
    "8 bits flipped in the largest array file": flip_bits_across_the_largest_array_file,
    "a flipped digit in the meta file": flip_a_digit_in_the_meta_file,
}


@pytest.mark.slow
@pytest.mark.parametrize("corruption", list(CORRUPTIONS))
def test_resume_skips_a_corrupted_newest_checkpoint(two_checkpoints, corpus, tmp_path, capsys,
                                                    corruption):
  ck = tmp_path / "ck"
  shutil.copytree(two_checkpoints, ck)
  CORRUPTIONS[corruption](ck / "4")
  capsys.readouterr()
  code = run_in_process(corpus, tmp_path / "out", f"--checkpoint_dir={ck}", "--max_steps=6",
                        "--measure_every_steps=2", "--resume")
  captured = capsys.readouterr()
  assert code == 0, captured.err
  skipped = [line for line in captured.out.splitlines() if "skipping the checkpoint" in line]
  assert len(skipped) == 1 and "step 4" in skipped[0], captured.out
  assert "resuming from the checkpoint of step 2" in captured.out
  raw = pickle.loads((tmp_path / "out" / "raw.pkl").read_bytes())
  assert raw["final"]["steps"] == 6 and raw["losses"]["step"] == list(range(6))
  assert (ck / "4.corrupt").is_dir()                     # moved aside, not deleted


@pytest.mark.slow
def test_eight_flipped_bits_fall_back_and_end_as_an_uninterrupted_run(two_checkpoints, corpus,
                                                                      tmp_path, capsys):
  """Issue 24: the newest step, silently damaged, was resumed and the run ended elsewhere."""
  ck = tmp_path / "ck"
  shutil.copytree(two_checkpoints, ck)
  flip_bits_across_the_largest_array_file(ck / "4")
  capsys.readouterr()
  assert run_in_process(corpus, tmp_path / "resumed", f"--checkpoint_dir={ck}", "--max_steps=6",
                        "--measure_every_steps=2", "--resume") == 0
  out = capsys.readouterr().out
  assert "skipping the checkpoint of step 4: it is unsound (" in out, out
  assert "resuming from the checkpoint of step 2" in out
  assert run_in_process(corpus, tmp_path / "whole", f"--checkpoint_dir={tmp_path / 'ck_whole'}",
                        "--max_steps=6", "--measure_every_steps=2") == 0
  resumed, whole = (pickle.loads((tmp_path / name / "raw.pkl").read_bytes())
                    for name in ("resumed", "whole"))
  assert resumed["losses"] == whole["losses"]
  assert resumed["final"]["test_loss"] == whole["final"]["test_loss"]
  untimed = [[{k: v for k, v in r.items() if k not in ("seconds", "time")} for r in raw["records"]]
             for raw in (resumed, whole)]
  assert untimed[0] == untimed[1] and len(untimed[0]) == 3


@pytest.mark.slow
def test_no_sound_checkpoint_is_one_line_and_exit_2(two_checkpoints, corpus, tmp_path, capsys):
  ck = tmp_path / "ck"
  shutil.copytree(two_checkpoints, ck)
  for step in ("2", "4"):
    CORRUPTIONS["missing arrays folder"](ck / step)
  capsys.readouterr()
  code = run_in_process(corpus, tmp_path / "out", f"--checkpoint_dir={ck}", "--max_steps=6",
                        "--resume")
  err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
  assert code == 2 and len(err) == 1 and "--resume" in err[0], err
  assert not (tmp_path / "out" / "raw.pkl").exists()


# --------------------------------------------------------------------------------------------
# Defect 6 (signals) and 8 (Ctrl-C twice)


@pytest.mark.parametrize("sig, code, reason", [(signal.SIGINT, 130, "interrupted"),
                                               (signal.SIGTERM, 143, "terminated")])
@pytest.mark.slow
def test_a_signal_while_compiling_stops_at_once(corpus, tmp_path, sig, code, reason):
  """Before anything is computed there is nothing to keep: one line, exit 130/143, without
  waiting for the compilation (today's runs waited for it and the first measurement)."""
  model = ["--num_layers=4", "--model_size=128", "--num_heads=4", "--key_size=32",
           "--sequence_length=64", "--batch_size=8", "--lanczos_max_steps=20"]
  # No compilation cache: the signal must find the run compiling, not reading programs back.
  proc = start(corpus, tmp_path, "--measure_every_steps=1", "--compilation_cache_dir=",
               model=model)
  try:
    read_until(proc.stdout, "compiling the training step")
    proc.send_signal(sig)
    out, err = proc.communicate(timeout=120)
  finally:
    proc.kill()
  assert proc.returncode == code, err
  assert f"{reason} while compiling: nothing computed yet" in err
  assert "measure step" not in out
  no_traceback(err)


@pytest.mark.slow
def test_ctrl_c_while_a_dataset_is_prepared_stops_at_once(shared_data, tmp_path):
  """TFDS preparing MNIST keeps the main thread in library code for ~20 s; a Ctrl-C there once
  waited, unacknowledged, until the preparation ended."""
  args = [sys.executable, "-u", "-m", "image_classification",
          f"--manual_dir={shared_data / 'mnist'}", f"--tfds_data_dir={tmp_path / 'tfds'}",
          "--mlp_width=16", "--max_steps=2", *outputs(tmp_path)]
  (tmp_path / "tfds").mkdir()
  proc = subprocess.Popen(args, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          text=True, env=ENV)
  try:
    read_until(proc.stdout, "preparing mnist")
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=120)
  finally:
    proc.kill()
  assert proc.returncode == 130, err
  assert "interrupted while loading the data: nothing computed yet" in err
  assert "Test error" not in out and not (tmp_path / "raw.pkl").exists()
  no_traceback(err)


@pytest.mark.slow
def test_ctrl_c_twice_exits_at_once_naming_what_exists(corpus, tmp_path):
  ck = tmp_path / "ck"
  proc = start(corpus, tmp_path, "--measure_every_steps=1", "--max_steps=100000",
               f"--checkpoint_dir={ck}")
  try:
    read_until(proc.stdout, "measure step 1")
    proc.send_signal(signal.SIGINT)
    first = read_until(proc.stderr, "interrupted:")
    time.sleep(0.5)                                      # a human's second Ctrl-C, not a repeat
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=120)
  finally:
    proc.kill()
  err = "".join(first) + err
  assert proc.returncode == 130, err
  no_traceback(err)
  again = [line for line in err.splitlines() if "interrupted again" in line]
  assert len(again) == 1, err
  assert str(tmp_path / "raw.pkl") in again[0]           # written after each measurement
  if not any(p.name.isdigit() for p in ck.iterdir()):
    assert "checkpoints" not in again[0]                 # none was written: none is named


# --------------------------------------------------------------------------------------------
# Minor: the step of divergence, named the same everywhere; the program's name


@pytest.mark.slow
def test_divergence_names_the_first_non_finite_step(corpus, tmp_path, capsys):
  code = run_in_process(corpus, tmp_path, "--measure_every_steps=1", "--step_size=1e6",
                        "--max_steps=50")
  out = capsys.readouterr().out
  assert code == 0
  raw = pickle.loads((tmp_path / "raw.pkl").read_bytes())
  losses = raw["losses"]["loss"]
  first_bad = next(s for s, x in zip(raw["losses"]["step"], losses) if not math.isfinite(x))
  assert raw["final"]["diverged_at_step"] == raw["final"]["steps"] == first_bad
  assert f"at step {first_bad}: stopping (diverged)" in out
  assert f"stopped (diverged at step {first_bad}) after {first_bad} steps" in out


@pytest.mark.slow
def test_required_flag_error_names_the_module():
  proc = subprocess.run([sys.executable, "-m", "transformer"], cwd=REPO, capture_output=True,
                        text=True, env=ENV, timeout=120)
  lines = [line for line in proc.stderr.splitlines() if line.strip()]
  assert proc.returncode == 2 and len(lines) == 1, proc.stderr
  assert lines[0].startswith("transformer: error:") and "training_data" in lines[0]
