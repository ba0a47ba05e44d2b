"""The files a run writes: atomic writes, checks that a path can be written, the raw pickle and
the checksums that prove its content.

A run's raw data is a plain dict (config, records, losses, final) holding only Python builtins,
so it can be read back with nothing but the standard library. This module does not import jax;
`to_plain` recognises numpy/jax values by their duck-typed `.item()` / `.tolist()` methods.

A finished run's `final` holds `records_sha256`, the sha256 of its records and losses in the
canonical JSON of `json_sha256`; `raw_status` checks a pickle read back against it.
"""

import contextlib
import hashlib
import json
import os
import pickle
import tempfile
from typing import Any, Optional

from sam_edge.options import Option

PICKLE_PROTOCOL = 4
RAW_DATA = Option("raw_data_output", "/tmp/raw.pkl",
                  "pickle of a plain dict: config, records, losses, final")
PARAMS = Option("params_output", "",
                "npz: the final parameters and BatchNorm statistics with the run's config, "
                "checksummed (read by `sam_edge.compare --global_metrics` and "
                "`sam_edge.landscape`)")
SWEEP_FILES = {PARAMS.name: "params.npz"}  # run-folder names of outputs whose default is ''
RECORDS_SHA256 = "records_sha256"          # the key of the checksum in a finished run's final
_PLAIN_TYPES = (bool, int, float, complex, str, bytes)


def atomic_write_bytes(path: str, data: bytes) -> None:
  """Writes `data` (the complete new contents) to `path` so a kill leaves the old or the new file:
  a temporary file in the same folder, fsynced, then renamed onto `path` (removed on failure);
  the folder is fsynced too (best effort), so that the rename survives a crash."""
  folder = os.path.dirname(os.path.abspath(path))
  mode = _mode_for(path)
  fd, tmp_path = tempfile.mkstemp(dir=folder, prefix=f".{os.path.basename(path)}.", suffix=".tmp")
  try:
    with os.fdopen(fd, "wb") as f:
      if hasattr(os, "fchmod"):
        os.fchmod(f.fileno(), mode)
      f.write(data)
      f.flush()
      os.fsync(f.fileno())
    os.replace(tmp_path, path)
  except BaseException:
    with contextlib.suppress(OSError):
      os.unlink(tmp_path)
    raise
  with contextlib.suppress(OSError):
    fd = os.open(folder, os.O_RDONLY)
    try:
      os.fsync(fd)
    finally:
      os.close(fd)


def _mode_for(path: str) -> int:
  """The permissions for a new version of `path`: its own if it exists, else what an ordinary
  `open` gives (`mkstemp`'s are 0o600): 0o666 less the umask, read from /proc without changing it
  where Linux allows, else taken as 0o022."""
  with contextlib.suppress(OSError):
    return os.stat(path).st_mode & 0o777
  umask = 0o022
  with contextlib.suppress(OSError, ValueError, IndexError, StopIteration):
    with open("/proc/self/status", encoding="ascii") as f:
      umask = next(int(line.split()[1], 8) for line in f if line.startswith("Umask:"))
  return 0o666 & ~umask


def to_plain(obj: Any) -> Any:
  """A copy of `obj` (any value) with numpy/jax-like values as Python builtins, through dicts,
  lists and tuples: 0-d array-likes (`.item()`) become numbers, arrays (`.tolist()`) nested lists.
  """
  if obj is None or type(obj) in _PLAIN_TYPES:
    return obj
  if isinstance(obj, dict):
    return {to_plain(k): to_plain(v) for k, v in obj.items()}
  if isinstance(obj, list):
    return [to_plain(v) for v in obj]
  if isinstance(obj, tuple):                        # a namedtuple becomes a plain tuple
    return tuple(to_plain(v) for v in obj)
  if hasattr(obj, "item") and getattr(obj, "ndim", None) == 0:
    return obj.item()
  if hasattr(obj, "tolist"):
    return obj.tolist()
  # Subclasses of builtins (np.float64 is a float, np.str_ a str) would
  # otherwise pickle as references to their defining module.
  return next((plain(obj) for plain in _PLAIN_TYPES if isinstance(obj, plain)), obj)


def write_raw(path: str, raw: dict) -> None:
  """Atomically writes a run's raw data `raw` to the file `path` as a pickle of `to_plain(raw)`."""
  atomic_write_bytes(path, pickle.dumps(to_plain(raw), protocol=PICKLE_PROTOCOL))


def read_raw(path: str) -> dict:
  """The run's raw data dict, read from the pickle file `path` written by `write_raw`."""
  with open(path, "rb") as f:
    return pickle.load(f)


def json_sha256(value: Any) -> str:
  """The sha256 (hex) of `value`'s canonical JSON: the ASCII bytes of

      json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=True)

  Python's json writes a float with `repr` (the shortest string that reads back as the same
  double), ±inf and NaN as `Infinity`, `-Infinity`, `NaN`, an int as its digits, tuples as lists
  and every non-ASCII character as a \\uXXXX escape, with keys sorted and no spaces, so the same
  plain values always give the same bytes, on any machine, from the pickle alone. Raises
  TypeError or ValueError for a value JSON cannot hold.
  """
  text = json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=True,
                    allow_nan=True)
  return hashlib.sha256(text.encode("ascii")).hexdigest()


def records_sha256(records: list, losses: dict) -> str:
  """`final.records_sha256`: `json_sha256({"records": records, "losses": losses})` of the plain
  values (`to_plain`), i.e. of exactly what the pickle holds.

  To check a pickle with nothing but Python: `raw = pickle.load(f)`, then compare
  `raw["final"]["records_sha256"]` with this function of `raw["records"]` and `raw["losses"]`.
  """
  return json_sha256({"records": to_plain(records), "losses": to_plain(losses)})


def raw_status(raw: Any) -> tuple[bool, str]:
  """(sound, one line) for a run's raw dict as read back from its pickle.

  Sound: a finished run whose records and losses match `final.records_sha256`; an unfinished run
  (`final` is {} until the run ends: the pickle is rewritten after every measurement, and the
  checksum comes with the end); a finished run written before checksums existed (nothing to check
  against). Unsound: not a run's dict, or records and losses that do not match the checksum.
  """
  if not isinstance(raw, dict) or not isinstance(raw.get("records"), list):
    return False, "not a raw pickle of a run (no list of 'records')"
  final, count = raw.get("final"), f"{len(raw['records'])} measurements"
  if not isinstance(final, dict):
    return False, "its 'final' is not a dict"
  if not final:
    return True, f"unfinished: {count} so far (the checksum is written when the run ends)"
  if RECORDS_SHA256 not in final:
    return True, f"finished before checksums existed: {count}, nothing to check them against"
  try:
    actual = records_sha256(raw["records"], raw.get("losses"))
  except (TypeError, ValueError) as e:
    return False, f"its records cannot be encoded to be checked ({type(e).__name__}: {e})"
  if actual != final[RECORDS_SHA256]:
    return False, "its records and losses do not match final.records_sha256"
  return True, f"{count} and their losses match final.records_sha256"


def file_sha256(path: str) -> str:
  """The sha256 (hex) of the bytes of the file `path`."""
  with open(path, "rb") as f:
    return hashlib.file_digest(f, "sha256").hexdigest()


def folder_problem(path: str, *, must_exist: bool = False) -> Optional[str]:
  """Why `path` cannot be used as a folder, in one line, or None (the one folder check): a folder
  to write in is created with its parents, so its nearest existing ancestor must be a writable
  folder; with `must_exist`, a folder to read from must exist."""
  absolute = os.path.abspath(path)
  if must_exist:
    if not os.path.exists(absolute):
      return f"{absolute} does not exist"
    return None if os.path.isdir(absolute) else f"{absolute} is not a folder"
  probe = absolute
  while not os.path.exists(probe):
    probe = os.path.dirname(probe)
  if not os.path.isdir(probe):
    return f"{probe} is not a folder"
  if not os.access(probe, os.W_OK | os.X_OK):
    return f"{probe} is not writable"
  return None


def check_writable(path: str) -> str | None:
  """Why no file could be written at `path` (one line), or None if it could: checked before any
  long work."""
  if not path:
    return "the path is empty"
  if os.path.isdir(path):
    return f"{path} is a directory"
  if os.path.lexists(path):
    try:
      mode = os.stat(path).st_mode
    except OSError as e:
      return f"{path} cannot be read ({e.strerror or e})"
    if not mode & 0o222:            # no write bit for anyone: read-only on purpose (even for root)
      return f"{path} exists and is read-only"
    if not os.access(path, os.W_OK):
      return f"{path} exists and is not writable"
  folder = os.path.dirname(os.path.abspath(path))
  if not os.path.exists(folder):
    return f"folder {folder} does not exist"
  if not os.path.isdir(folder):
    return f"{folder} is not a directory"
  if not os.access(folder, os.W_OK | os.X_OK):
    return f"folder {folder} is not writable"
  try:
    fd, tmp_path = tempfile.mkstemp(
        dir=folder, prefix="." + os.path.basename(path) + ".", suffix=".check")
  except OSError as e:
    return f"folder {folder} is not writable ({e.strerror or e})"
  os.close(fd)
  with contextlib.suppress(OSError):
    os.unlink(tmp_path)
  return None
