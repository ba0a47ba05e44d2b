"""A lock on a folder, so that two runs never share one checkpoint folder.

The lock is a file `<folder>/LOCK_NAME` holding JSON {"pid", "host", "start"}: the process that
holds it, its host, and the process's start time (from /proc, so that a recycled PID is not taken
for the owner). It is created atomically (O_CREAT | O_EXCL). A lock whose owner is gone (same host,
and the PID no longer runs, or runs a process started at another time) is stale and is taken over;
a lock held by a live process, or by a process on another host (whose liveness cannot be checked
from here), is refused with one line naming the owner and the file to delete if that run is gone.
"""

import contextlib
import json
import os
import socket
from typing import Optional

LOCK_NAME = "sam_edge.lock"


def _start_time(pid: int) -> Optional[str]:
  """The start time of process `pid` in clock ticks since boot (field 22 of /proc/PID/stat), or
  None where /proc is not available."""
  try:
    with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as f:
      stat = f.read()
  except OSError:
    return None
  # The command name (field 2) is in parentheses and may hold spaces: split after its ')'.
  fields = stat.rsplit(")", 1)[-1].split()
  return fields[19] if len(fields) > 19 else None


def _me() -> dict:
  return {"pid": os.getpid(), "host": socket.gethostname(), "start": _start_time(os.getpid())}


def read_owner(folder: str) -> Optional[dict]:
  """The owner recorded in `folder`'s lock file, None if there is none; {} if it is unreadable."""
  try:
    with open(os.path.join(folder, LOCK_NAME), encoding="utf-8") as f:
      return json.load(f)
  except FileNotFoundError:
    return None
  except (OSError, ValueError):
    return {}


def is_stale(owner: dict) -> bool:
  """Whether a lock's owner is certainly gone: same host, and its PID is not running or is
  running a process that started at another time. An unreadable lock file counts as stale."""
  if not owner:
    return True
  if owner.get("host") != socket.gethostname():
    return False
  pid = owner.get("pid")
  if not isinstance(pid, int):
    return True
  try:
    os.kill(pid, 0)
  except ProcessLookupError:
    return True
  except PermissionError:           # alive, owned by another user
    pass
  start = _start_time(pid)
  return owner.get("start") is not None and start is not None and start != owner.get("start")


def problem(folder: str) -> Optional[str]:
  """Why `folder` cannot be locked by this process (one line), or None if it can."""
  owner = read_owner(folder)
  if owner is None or is_stale(owner) or owner == _me():
    return None
  return (f"is in use by another run (process {owner.get('pid')} on {owner.get('host')}); if that "
          f"run is gone, delete {os.path.join(folder, LOCK_NAME)}")


class FolderLock:
  """Holds the lock on `folder` from `acquire()` to `release()` (the folder is created)."""

  def __init__(self, folder: str):
    self.folder = os.path.abspath(folder)
    self.path = os.path.join(self.folder, LOCK_NAME)
    self.held = False

  def acquire(self) -> None:
    """Takes the lock, taking over a stale one; raises RuntimeError (one line) if it is held."""
    os.makedirs(self.folder, exist_ok=True)
    me = json.dumps(_me()).encode()
    for _ in range(3):
      try:
        fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
      except FileExistsError:
        reason = problem(self.folder)
        if reason:
          raise RuntimeError(f"{self.folder} {reason}") from None
        with contextlib.suppress(FileNotFoundError):     # stale: take it over
          os.unlink(self.path)
        continue
      with os.fdopen(fd, "wb") as f:
        f.write(me)
      self.held = True
      return
    raise RuntimeError(f"{self.folder}: could not take the lock {self.path}")

  def release(self) -> None:
    """Removes the lock file if this process still holds it."""
    if self.held and read_owner(self.folder) == _me():
      with contextlib.suppress(OSError):
        os.unlink(self.path)
    self.held = False

  def __enter__(self) -> "FolderLock":
    self.acquire()
    return self

  def __exit__(self, *exc: object) -> None:
    self.release()
