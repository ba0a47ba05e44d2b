"""The bookkeeping of failed writes (run/failures.py, the Writer's keys and words), the removal of
what a failed checkpoint save leaves, and the filters that keep orbax's background reports of it
off the terminal (run/library_noise.py). tests/test_write_faults.py runs whole runs."""

import errno
import logging
import os
import sys
import types

import pytest

from sam_edge.run import checkpoints, failures, library_noise, outputs


def test_a_failure_is_said_once_remembered_and_cleared_by_a_success(capsys):
  f = failures.Failures()
  full = OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

  def fail():
    raise full
  assert f.attempt("file:/o/raw.pkl", "/o/raw.pkl", fail) == "No space left on device"
  assert f.attempt("file:/o/raw.pkl", "/o/raw.pkl", fail) == "No space left on device"
  assert capsys.readouterr().err.splitlines() == [
      "warning: could not write /o/raw.pkl: No space left on device"]
  assert "file:/o/raw.pkl" in f and f.lines() == ["/o/raw.pkl (No space left on device)"]
  assert f.attempt("file:/o/raw.pkl", "/o/raw.pkl", lambda: None) is None
  assert "file:/o/raw.pkl" not in f and f.lines() == []
  f.attempt("file:/o/raw.pkl", "/o/raw.pkl", fail)                     # said again
  assert len(capsys.readouterr().err.splitlines()) == 1


def test_the_writer_keeps_files_and_checkpoints_apart(tmp_path, capsys):
  """A file named like the checkpoints' key: its success never clears a failed save."""
  w = outputs.Writer({"raw_data_output": "checkpoint"}, "t", {}, None, {},
                     checkpoint_dir=str(tmp_path))

  def fail():
    raise OSError(errno.EACCES, os.strerror(errno.EACCES))
  w.checkpoint(6, fail)
  w._write("checkpoint", lambda: None)
  assert w.failures.lines() == [f"the checkpoint of step 6 in {tmp_path} (Permission denied)"]
  assert w.wrote("checkpoint")
  w.close_checkpoints(fail)                     # the same fault again: nothing more to say
  assert len(w.failures.lines()) == 1
  assert len(capsys.readouterr().err.splitlines()) == 1
  w.failures.forget(outputs.CHECKPOINT)          # a diverged run needs no newer save
  assert w.failures.lines() == []


@pytest.mark.parametrize("error, words", [
    (OSError(errno.ENOSPC, os.strerror(errno.ENOSPC)), "No space left on device"),
    (ValueError('RESOURCE_EXHAUSTED: Error writing local file "/c/_sharding": Failed to write '
                '11254 bytes to file 4: No space left on device [os_error_code=28]'),
     "No space left on device"),
    (ValueError("PERMISSION_DENIED: Read-only file system"), "Read-only file system"),
    (KeyError("w"), "KeyError: 'w'"),
])
def test_reasons_are_the_systems_words(error, words):
  assert failures.reason(error) == words


def test_what_a_pickle_holds_in_words():
  assert outputs.holds({"losses": {"step": [0, 1, 2]}, "records": [{}] * 6, "final": {}}) == (
      "steps 0–2 and 6 measurements (unfinished)")
  assert outputs.holds({"losses": {"step": []}, "records": [{}], "final": {"steps": 1}}) == (
      "no step's loss and 1 measurement (finished)")


def test_a_failed_saves_temporary_folder_is_removed_and_only_its_own(tmp_path):
  """On a folder of its own (orbax's own clean-up of the checkpointer's folder runs in the
  background when it opens)."""
  left = tmp_path / "left"
  left.mkdir()
  for name in ("3.orbax-checkpoint-tmp", "13.orbax-checkpoint-tmp-17", "3", "30"):
    (left / name).mkdir()
  with checkpoints.Checkpointer(str(tmp_path / "ck")) as ck:
    ck.directory = str(left)
    ck._remove_unfinished(3)                                   # a failed save of step 3
    assert sorted(os.listdir(left)) == ["13.orbax-checkpoint-tmp-17", "3", "30"]
  assert sorted(os.listdir(left)) == ["3", "30"]               # close removes the rest


def _traceback_through(filename: str) -> types.TracebackType:
  code = compile("raise OSError(28, 'No space left on device')", filename, "exec")
  try:
    exec(code)  # pylint: disable=exec-used
  except OSError:
    return sys.exc_info()[2]


def _closed_loop_error() -> tuple[RuntimeError, types.TracebackType]:
  def call_soon_threadsafe():
    raise RuntimeError("Event loop is closed")
  try:
    call_soon_threadsafe()
  except RuntimeError as e:
    return e, e.__traceback__


def test_only_orbax_noise_is_kept_off_the_terminal(monkeypatch):
  monkeypatch.setitem(library_noise._state, "failed", False)   # no save has failed here yet
  library_noise.silence()
  orbax = library_noise._orbax_dir()
  record = lambda path, tb=None: logging.LogRecord(  # noqa: E731
      "asyncio", logging.ERROR, path, 1, "Future exception was never retrieved", None,
      (OSError, OSError(), tb) if tb else None)
  keep = library_noise._OrbaxRecords()
  assert not keep.filter(record(orbax + "checkpoint/_src/path/async_path.py"))
  assert not keep.filter(record("/x/asyncio/base_events.py",
                                _traceback_through(orbax + "checkpoint/x.py")))
  assert keep.filter(record("/home/me/orbax/mine.py", _traceback_through("/home/me/orbax/m.py")))
  said = []
  hook = library_noise._unraisablehook(said.append)
  error, tb = _closed_loop_error()
  closed = types.SimpleNamespace(object=None, exc_type=RuntimeError, exc_value=error,
                                 exc_traceback=tb)
  hook(closed)
  assert said == [closed]                      # outside a save it is somebody else's: kept
  with pytest.raises(OSError):
    with library_noise.saving():
      hook(closed)                             # while a save runs: orbax's loop, dropped
      raise OSError(errno.ENOSPC, "No space left on device")
  hook(closed)                                 # after a failed save: its late reports, dropped
  assert said == [closed]
  other = types.SimpleNamespace(object=None, exc_type=ValueError, exc_value=ValueError("x"),
                                exc_traceback=None)
  hook(other)
  assert said[-1] is other
