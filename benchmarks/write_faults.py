"""Write faults without root: a disk that fills up, or a folder made read-only, mid-run.

A `Fault` wraps the writes of a run:
  * the project's own write function, `records.atomic_write_bytes` (the pickle, every PDF, the
    parameters file, done.json);
  * the Python writes of the checkpointing library, `etils.epath`'s `Path.write_text` and
    `Path.write_bytes` (orbax's JSON items, its metadata and commit files), so that a checkpoint
    fails half-way, with its temporary folder written, as on a real full disk (its arrays, which
    TensorStore writes from C++, still go through).

It fires at the first write whose path `trigger(path)` accepts, and from then on every write under
`folder` fails (a full disk stays full; a read-only folder stays read-only), with the system's own
error: OSError(ENOSPC, "No space left on device") or OSError(EACCES, "Permission denied").
`failed` lists the paths whose write failed. benchmarks/faults.py and tests/test_write_faults.py
use it; `tests/test_write_faults.py` also runs a real full disk (a small tmpfs) where root can
mount one.
"""

import errno
import os
from typing import Callable

KINDS = {"no space": errno.ENOSPC, "read-only": errno.EACCES}


class Fault:
  """A write fault of `kind` (KINDS) under `folder`, firing at the first write `trigger` accepts
  (module doc). Use as a context manager, or `install()` and `remove()`."""

  def __init__(self, kind: str, folder: str, trigger: Callable[[str], bool] = lambda path: True):
    self.code = KINDS[kind]
    self.folder = os.path.abspath(folder)
    self.trigger = trigger
    self.fired = False
    self.failed: list[str] = []
    self._saved: list[tuple[object, str, object]] = []

  def check(self, path: str) -> None:
    """Raises the fault's OSError for a write of `path`, once it has fired."""
    path = os.path.abspath(os.fspath(path))
    if not path.startswith(self.folder + os.sep):
      return
    if not self.fired and self.trigger(path):
      self.fired = True
    if self.fired:
      self.failed.append(path)
      raise OSError(self.code, os.strerror(self.code), path)

  def _wrap(self, owner: object, name: str) -> None:
    original = getattr(owner, name)
    fault = self

    def write(*args, **kwargs):
      fault.check(str(args[0]))          # the path (or the Path itself)
      return original(*args, **kwargs)

    self._saved.append((owner, name, original))
    setattr(owner, name, write)

  def install(self) -> "Fault":
    from sam_edge import records  # pylint: disable=import-outside-toplevel
    self._wrap(records, "atomic_write_bytes")
    path_class = _epath_class()
    for name in ("write_text", "write_bytes"):
      self._wrap(path_class, name)
    return self

  def remove(self) -> None:
    while self._saved:
      owner, name, original = self._saved.pop()
      setattr(owner, name, original)

  def __enter__(self) -> "Fault":
    return self.install()

  def __exit__(self, *exc: object) -> None:
    self.remove()


def _epath_class() -> type:
  """The class whose write_text/write_bytes orbax's local writes go through."""
  from etils.epath import abstract_path  # pylint: disable=import-outside-toplevel
  return abstract_path.Path


# ---------------------------------------------------------------------------------------------
# The write cases of benchmarks/faults.py.

# {case: (kind, which writes fire it, from which step)}; a run of 60 steps measured every 10.
CASES = {
    "no space during a checkpoint": ("no space", "checkpoint", 30),
    "no space during the pickle": ("no space", "pickle", 30),
    "no space during a PDF": ("no space", "PDF", 0),
    "a folder made read-only mid-run": ("read-only", "any", 30),
}
REAL_DISK = "a real full disk (300 kB tmpfs)"


def planned(plan: dict, step: Callable[[], int]) -> Fault:
  """The Fault of a plan {"case": name in CASES, "folder": the run's folder}; `step()` is the
  run's current step."""
  kind, which, first = CASES[plan["case"]]
  checkpoints = os.sep + "ck" + os.sep
  accept = {"checkpoint": lambda path: checkpoints in path,
            "pickle": lambda path: path.endswith(".pkl"),
            "PDF": lambda path: path.endswith(".pdf"),
            "any": lambda path: True}[which]
  return Fault(kind, plan["folder"], lambda path: accept(path) and step() >= first)


def said_unwritten(stdout: str, stderr: str, folder: str) -> tuple[set, bool]:
  """(the outputs the run's warnings say it could not write, whether its last lines name one of
  them as written, or name a checkpoint step that is not on disk)."""
  failed = {line.split("could not write ", 1)[1].split(": ", 1)[0]
            for line in stderr.splitlines() if line.startswith("warning: could not write ")}
  files = {f for f in failed if not f.startswith("the checkpoint")}
  ended = [line for line in stdout.splitlines() if line.startswith("stopped (")]
  named = ended[-1].split("; outputs: ", 1)[1] if ended else ""
  claims = any(f in named for f in files) or any(
      f"{f} draws" in stdout for f in files)
  if "checkpoints of steps " in named:
    steps = named.split("checkpoints of steps ", 1)[1].split(" in ")[0].split(", ")
    claims = claims or not all(os.path.isdir(os.path.join(folder, "ck", s)) for s in steps)
  return failed, claims


def mount_tmpfs(folder: str, size: str) -> bool:
  """Mounts (or remounts at a new size) a tmpfs on `folder`; whether it worked (root only)."""
  import subprocess  # pylint: disable=import-outside-toplevel
  if os.geteuid() != 0:
    return False
  mounted = os.path.ismount(folder)
  options = f"remount,size={size}" if mounted else f"size={size}"
  done = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", folder],
                        capture_output=True, check=False)
  return done.returncode == 0


def unmount(folder: str) -> None:
  import subprocess  # pylint: disable=import-outside-toplevel
  subprocess.run(["umount", folder], capture_output=True, check=False)
