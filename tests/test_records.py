"""Tests for sam_edge.records: atomic writes, plain pickles, writability."""
import os
import pickle
import stat
import subprocess
import sys
import threading

import numpy as np
import pytest

from sam_edge import records


def test_atomic_write_creates_and_replaces(tmp_path):
  path = tmp_path / "out.bin"
  records.atomic_write_bytes(str(path), b"first")
  assert path.read_bytes() == b"first"
  records.atomic_write_bytes(str(path), b"second, longer")
  assert path.read_bytes() == b"second, longer"
  assert os.listdir(tmp_path) == ["out.bin"]


def test_atomic_write_permissions(tmp_path):
  """New files get 0o666 less the umask (not mkstemp's 0o600); old keep theirs."""
  old_umask = os.umask(0o022)
  try:
    new = tmp_path / "new.bin"
    records.atomic_write_bytes(str(new), b"x")
    assert stat.S_IMODE(new.stat().st_mode) == 0o644
    kept = tmp_path / "kept.bin"
    kept.write_bytes(b"old")
    kept.chmod(0o640)
    records.atomic_write_bytes(str(kept), b"new")
    assert stat.S_IMODE(kept.stat().st_mode) == 0o640
  finally:
    os.umask(old_umask)


def test_atomic_write_failure_in_replace_keeps_old_file(tmp_path, monkeypatch):
  path = tmp_path / "out.bin"
  path.write_bytes(b"old")

  def broken_replace(src, dst):
    raise OSError("simulated crash before rename")

  monkeypatch.setattr(records.os, "replace", broken_replace)
  with pytest.raises(OSError, match="simulated"):
    records.atomic_write_bytes(str(path), b"new")
  assert path.read_bytes() == b"old"
  assert os.listdir(tmp_path) == ["out.bin"]


def test_atomic_write_failure_in_fsync_keeps_old_file(tmp_path, monkeypatch):
  path = tmp_path / "out.bin"
  path.write_bytes(b"old")

  def broken_fsync(fd):
    raise KeyboardInterrupt  # Not an Exception: must still clean up.

  monkeypatch.setattr(records.os, "fsync", broken_fsync)
  with pytest.raises(KeyboardInterrupt):
    records.atomic_write_bytes(str(path), b"new")
  assert path.read_bytes() == b"old"
  assert os.listdir(tmp_path) == ["out.bin"]


def test_write_raw_unpicklable_keeps_old_file(tmp_path):
  path = tmp_path / "run.pkl"
  records.write_raw(str(path), {"config": {"a": 1}, "records": [], "final": {}})
  before = path.read_bytes()
  with pytest.raises(TypeError):                   # a lock cannot be pickled
    records.write_raw(str(path), {"config": {"lock": threading.Lock()}})
  assert path.read_bytes() == before
  assert os.listdir(tmp_path) == ["run.pkl"]


def test_to_plain_converts_numpy():
  out = records.to_plain({
      "a": np.float32(1.5), "b": np.int64(3), "c": np.bool_(True),
      "d": np.arange(3, dtype=np.float32), "e": (np.float64(2.0), [np.eye(2)]),
      "f": np.array(4.0), "g": "text", "h": None,
  })
  assert out == {"a": 1.5, "b": 3, "c": True, "d": [0.0, 1.0, 2.0],
                 "e": (2.0, [[[1.0, 0.0], [0.0, 1.0]]]), "f": 4.0, "g": "text",
                 "h": None}
  assert type(out["a"]) is float
  assert type(out["b"]) is int
  assert type(out["c"]) is bool
  assert type(out["d"]) is list and type(out["d"][0]) is float
  assert type(out["e"]) is tuple and type(out["e"][0]) is float
  assert type(out["f"]) is float


def _raw_with_numpy() -> dict:
  rec = {
      "step": np.int64(10), "time": np.float64(1.25),
      "eigenvalues": np.array([3.0, 2.0, 1.0], dtype=np.float32),
      "residuals": [np.float32(1e-3), np.float32(2e-3), np.float32(3e-3)],
      "hvps": np.int32(40), "two_over_eta": 200.0,
      "sam_edge": np.float32(150.0), "grad_norm": np.float32(0.5),
      "loss": np.float32(np.nan), "g_alignment": np.float32(0.1),
      "sg_alignment": np.float32(0.9), "seconds": 0.01,
  }
  return {
      "config": {"lr": 0.01, "rho": np.float64(0.1), "model": "mlp"},
      "records": [rec],
      "losses": {"step": np.arange(3), "loss": np.array([1.0, 0.5, 0.25])},
      "final": {},
  }


def test_write_read_round_trip_plain_types(tmp_path):
  path = str(tmp_path / "run.pkl")
  records.write_raw(path, _raw_with_numpy())
  raw = records.read_raw(path)
  rec = raw["records"][0]
  assert type(rec["step"]) is int and rec["step"] == 10
  assert type(rec["time"]) is float
  assert type(rec["eigenvalues"]) is list
  assert all(type(v) is float for v in rec["eigenvalues"])
  assert rec["eigenvalues"] == [3.0, 2.0, 1.0]
  assert all(type(v) is float for v in rec["residuals"])
  assert type(rec["hvps"]) is int
  assert type(rec["loss"]) is float and np.isnan(rec["loss"])
  assert type(raw["config"]["rho"]) is float
  assert raw["losses"] == {"step": [0, 1, 2], "loss": [1.0, 0.5, 0.25]}
  assert raw["final"] == {}
  with open(path, "rb") as f:
    header = f.read(2)
  assert header[0] == pickle.PROTO[0] and header[1] >= 4


def test_pickle_loads_with_only_pickle(tmp_path):
  path = str(tmp_path / "run.pkl")
  records.write_raw(path, _raw_with_numpy())
  code = (
      "import pickle, sys\n"
      "raw = pickle.load(open(sys.argv[1], 'rb'))\n"
      "bad = [m for m in sys.modules\n"
      "       if m.split('.')[0] in ('sam_edge', 'jax', 'numpy')]\n"
      "assert not bad, bad\n"
      "print(raw['records'][0]['step'])\n"
  )
  # -I: isolated mode, so neither the repository nor site hooks are on path.
  out = subprocess.run([sys.executable, "-I", "-c", code, path],
                       capture_output=True, text=True, check=True, timeout=60)
  assert out.stdout.strip() == "10"


def test_check_writable_ok(tmp_path):
  assert records.check_writable(str(tmp_path / "new.pdf")) is None
  existing = tmp_path / "old.pdf"
  existing.write_bytes(b"x")
  assert records.check_writable(str(existing)) is None
  assert os.listdir(tmp_path) == ["old.pdf"]  # The probe file is gone.


def test_check_writable_missing_folder(tmp_path):
  reason = records.check_writable(str(tmp_path / "nope" / "out.pdf"))
  assert reason is not None and "does not exist" in reason
  assert "\n" not in reason


def test_check_writable_directory(tmp_path):
  reason = records.check_writable(str(tmp_path))
  assert reason is not None and "is a directory" in reason


def test_check_writable_folder_is_a_file(tmp_path):
  f = tmp_path / "file"
  f.write_bytes(b"")
  reason = records.check_writable(str(f / "out.pdf"))
  assert reason is not None and "not a directory" in reason


def test_check_writable_empty_path():
  assert records.check_writable("") is not None


def test_check_writable_read_only_folder(tmp_path):
  folder = tmp_path / "ro"
  folder.mkdir()
  folder.chmod(0o555)
  try:
    if os.access(folder, os.W_OK):
      pytest.skip("running as root: a read-only folder is still writable")
    reason = records.check_writable(str(folder / "out.pdf"))
    assert reason is not None and "not writable" in reason
  finally:
    folder.chmod(0o755)


def test_check_writable_reports_failed_probe(tmp_path, monkeypatch):
  """A folder that passes os.access but refuses files is still caught."""

  def refuse(*args, **kwargs):
    raise PermissionError(13, "Permission denied")

  monkeypatch.setattr(records.tempfile, "mkstemp", refuse)
  reason = records.check_writable(str(tmp_path / "out.pdf"))
  assert reason is not None and "not writable" in reason
