"""Failed writes of a run's outputs: each said in one warning line, remembered until the output is
written again, and listed at the end (a run that ends with some is not a success).

A full disk (or a folder made read-only, or a quota) fails every write from then on: the pickle
after every measurement, every checkpoint. The warning for an output is said at its first failed
write, not at every attempt; a later success clears it (and the next failure is said again).
"""

import errno
import os
import sys
from typing import Callable, Optional

# The causes of a failed write a user can act on, as the C library words them.
STORAGE_ERRORS = tuple(os.strerror(n) for n in (errno.ENOSPC, errno.EDQUOT, errno.EROFS,
                                                 errno.EACCES, errno.EPERM, errno.EIO))


def reason(e: BaseException) -> str:
  """Why a write failed, in a few words: the system's words for a full disk, a quota, a
  read-only or forbidden folder (also when a library wraps them in its own message, as TensorStore
  does), else the exception's type and its first 300 characters."""
  if isinstance(e, OSError) and e.strerror:
    return e.strerror
  message = " ".join(str(e).split())
  found = next((words for words in STORAGE_ERRORS if words in message), None)
  return found or f"{type(e).__name__}: {message[:300]}"


class Failures:
  """{key: (what, why)}: the outputs whose newest write failed (`key` names the output, e.g. its
  path or "checkpoint"; `what` says which write, e.g. "the checkpoint of step 60 in DIR")."""

  def __init__(self):
    self.now: dict[str, tuple[str, str]] = {}

  def attempt(self, key: str, what: str, write: Callable[[], object]) -> Optional[str]:
    """Runs `write()`; returns None, or why it failed (remembered under `key`, and said in one
    warning line unless the output's previous write failed too)."""
    try:
      write()
    except Exception as e:       # a failed write (folder removed, disk full, ...) costs that write
      why = reason(e)
      if key not in self.now:
        print(f"warning: could not write {what}: {why}", file=sys.stderr, flush=True)
      self.now[key] = (what, why)
      return why
    self.now.pop(key, None)
    return None

  def forget(self, key: str) -> None:
    """Drops the failure remembered under `key` (an output no longer needed)."""
    self.now.pop(key, None)

  def __contains__(self, key: str) -> bool:
    return key in self.now

  def lines(self) -> list[str]:
    """Each failed output as 'what (why)'."""
    return [f"{what} ({why})" for what, why in self.now.values()]
