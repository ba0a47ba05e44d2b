"""A full disk never looks like success: write faults injected into a tiny transformer run
(`benchmarks/write_faults.Fault`, through the run's own write functions and orbax's), each ending
with exit code 74, one warning line per failed output, no traceback, no failed file named among
the outputs, the newest complete state said, and a `--resume` after the fault that ends equal to an
uninterrupted run. A sweep never marks such a run done; a real full disk (a 300 kB tmpfs) where
root can mount one."""

import os
import pathlib
import subprocess
import sys
import textwrap

import pytest

import transformer
from benchmarks import faults, write_faults
from sam_edge import sweep
from sam_edge.cli import main as cli
from sam_edge.run import checkpoints, outputs
from tests.helpers import REPO, TINY_TRANSFORMER

STEPS = ["--max_steps=12", "--measure_every_steps=4", "--checkpoint_every_minutes=1e-9"]
PARAMS = "params.npz"


def flags(corpus: pathlib.Path, folder: pathlib.Path) -> list[str]:
  """Every output on (faults.OUTPUTS: four PDFs and raw.pkl), the parameters file and a checkpoint
  at every step."""
  return [f"--training_data={corpus}", *TINY_TRANSFORMER, *STEPS,
          f"--checkpoint_dir={folder / 'ck'}", f"--params_output={folder / PARAMS}",
          *[f"--{flag}={folder / name}" for flag, name in faults.OUTPUTS.items()]]


def run(corpus: pathlib.Path, folder: pathlib.Path, *extra: str) -> int:
  folder.mkdir(parents=True, exist_ok=True)
  cli.parse_flags(transformer.FLAGS, ["transformer", *flags(corpus, folder), *extra])
  return transformer.main([])


@pytest.fixture(scope="module")
def uninterrupted(corpus, tmp_path_factory):
  """The uninterrupted run's end (`faults.end_of`)."""
  folder = tmp_path_factory.mktemp("uninterrupted")
  assert run(corpus, folder) == 0
  return faults.end_of(folder)


def nth(n: int, accept):
  """A trigger that fires at the n-th write `accept` takes."""
  seen = []

  def trigger(path: str) -> bool:
    if accept(path):
      seen.append(path)
    return len(seen) >= n
  return trigger


def is_pickle(path: str) -> bool:
  return path.endswith("raw.pkl")


CASES = {
    # A pickle after every measurement (steps 0, 4, 8), then the final one: the disk fills there,
    # after the final checkpoint; the parameters file and the PDFs fail with it.
    "no space during the final pickle": ("no space", nth(4, is_pickle), 12),
    # The save of step 6 fails half-way (orbax's metadata), and every write after it.
    "no space during a checkpoint": ("no space", lambda p: f"{os.sep}ck{os.sep}6." in p, 5),
    # Only the PDFs (the last outputs written) fail.
    "no space during a PDF": ("no space", lambda p: p.endswith(".pdf"), 12),
    # The folder turns read-only at the pickle of step 4: checkpoints from step 5 on fail.
    "a folder made read-only mid-run": ("read-only", nth(2, is_pickle), 4),
}


@pytest.mark.slow
@pytest.mark.parametrize("case", list(CASES))
def test_a_write_fault_ends_honestly_and_resume_ends_equal(case, corpus, tmp_path, uninterrupted,
                                                          capsys):
  kind, trigger, sound = CASES[case]
  with write_faults.Fault(kind, str(tmp_path), trigger) as fault:
    code = run(corpus, tmp_path)
  out, err = capsys.readouterr()
  assert code == outputs.NOT_WRITTEN == 74
  assert fault.fired and "Traceback" not in out + err
  failed_files = {p for p in fault.failed if f"{os.sep}ck{os.sep}" not in p}
  checkpoint_failed = len(failed_files) < len(fault.failed)
  failed_outputs = failed_files | ({"checkpoint"} if checkpoint_failed else set())
  warnings = [line for line in err.splitlines() if line.startswith("warning: could not write")]
  assert len(warnings) == len(failed_outputs), warnings          # one line per failed output
  said = next(line for line in out.splitlines() if line.startswith("stopped ("))
  named = said.split("; outputs: ")[1]
  assert not any(path in named for path in failed_files), said  # never named as written
  assert all(f"{path} draws" not in out for path in failed_files)
  # The failed saves' temporary folders are removed; a TensorStore write still under way when a
  # save failed may bring one back after that, which verify then lists as not used (and the
  # next run on the folder removes, below). Nothing else is left.
  kept = checkpoints.unused_entries(str(tmp_path / "ck"))
  assert all(checkpoints.TMP_SUFFIX in name and int(name.split(".")[0]) > sound
             for name in kept), kept
  assert max(outputs.checkpoint_steps(str(tmp_path / "ck"))) == sound
  unwritten, state = [line for line in out.splitlines() if line.startswith("error: ")][-2:]
  assert all(path in unwritten for path in failed_files), unwritten
  assert ("the checkpoint of step" in unwritten) == ("checkpoint" in failed_outputs)
  assert f"the newest sound checkpoint is step {sound} in {tmp_path / 'ck'}" in state
  assert f"the pickle {tmp_path / 'raw.pkl'} holds " in state
  # Space is freed (the folder writable again): --resume ends as the uninterrupted run did.
  assert run(corpus, tmp_path, "--resume") == 0
  resumed = capsys.readouterr().out
  assert f"resuming from the checkpoint of step {sound} " in resumed
  assert faults.compare(faults.end_of(tmp_path), uninterrupted) == (0, True)
  assert checkpoints.unused_entries(str(tmp_path / "ck")) == []


@pytest.mark.slow
def test_a_process_whose_disk_fills_exits_74_without_a_traceback(corpus, tmp_path):
  """The same through a process of its own: the exit code, and nothing from orbax's threads at
  exit."""
  child = textwrap.dedent(f"""
      import os, sys
      from benchmarks import write_faults
      from sam_edge.cli import main as cli
      import transformer
      fault = write_faults.Fault("no space", {str(tmp_path)!r},
                                 lambda p: os.sep + "ck" + os.sep + "6." in p).install()
      sys.exit(cli.entry(transformer.TASK, transformer.FLAGS, sys.argv[1:]))
      """)
  done = subprocess.run([sys.executable, "-c", child, *flags(corpus, tmp_path)], cwd=REPO,
                        capture_output=True, text=True, timeout=300)
  assert done.returncode == 74, done.stderr[-2000:]
  assert "Traceback" not in done.stdout + done.stderr
  assert "error: the newest complete state on disk: " in done.stdout


@pytest.mark.slow
def test_a_sweep_never_marks_such_a_run_done_and_reruns_it(corpus, tmp_path, monkeypatch,
                                                           uninterrupted):
  out = tmp_path / "sw"
  hook = tmp_path / "hook"
  hook.mkdir()
  (hook / "sitecustomize.py").write_text(textwrap.dedent(f"""
      import os, sys
      sys.path.insert(0, {str(REPO)!r})
      from benchmarks import write_faults
      write_faults.Fault("no space", {str(out)!r},
                         lambda p: os.sep + "checkpoints" + os.sep + "6." in p).install()
      """))
  argv = [f"--out={out}", "--", "transformer", f"--training_data={corpus}", *TINY_TRANSFORMER,
          *STEPS]
  monkeypatch.setenv("PYTHONPATH", str(hook))
  assert sweep.main(argv) != 0
  folder = out / "run"
  assert not (folder / "done.json").exists()
  assert "--- sweep: exit code 74" in (folder / "log.txt").read_text()
  monkeypatch.delenv("PYTHONPATH")
  assert sweep.main(argv) == 0
  log = (folder / "log.txt").read_text().split("--- sweep: started")[2]
  assert "resuming from the checkpoint of step 5 " in log
  (folder / "ck").symlink_to(folder / "checkpoints")
  assert faults.compare(faults.end_of(folder), uninterrupted) == (0, True)


@pytest.mark.slow
def test_a_real_full_disk(corpus, tmp_path):
  """The issue's run (60 steps, measured every 10, checkpoints every 0.6 s) on a 300 kB tmpfs:
  non-zero, the newest complete state named, no traceback (only where root can mount one)."""
  disk = tmp_path / "disk"
  disk.mkdir()
  if not write_faults.mount_tmpfs(str(disk), "300k"):
    pytest.skip("mounting a tmpfs needs root")
  try:
    argv = [sys.executable, "-m", "transformer", f"--training_data={corpus}", *TINY_TRANSFORMER,
            "--max_steps=60", "--measure_every_steps=10", "--checkpoint_every_minutes=0.01",
            f"--checkpoint_dir={disk / 'ck'}",
            *[f"--{flag}={disk / name}" for flag, name in faults.OUTPUTS.items()]]
    done = subprocess.run(argv, cwd=REPO, capture_output=True, text=True, timeout=300)
    assert done.returncode == 74, done.stdout[-2000:] + done.stderr[-2000:]
    assert "Traceback" not in done.stdout + done.stderr
    assert "error: the newest complete state on disk: " in done.stdout
    assert all(checkpoints.TMP_SUFFIX in name for name in checkpoints.unused_entries(
        str(disk / "ck")))                     # at most a failed save's folder (see above)
  finally:
    write_faults.unmount(str(disk))
