"""A child process that must not outlive its parent asks Linux for a signal when the parent dies
(`PR_SET_PDEATHSIG`): a sweep's runs (SIGTERM: they checkpoint and stop) and the input stream's
worker processes (SIGKILL: nothing of theirs is worth keeping). A no-op where prctl is missing."""

import ctypes
import os

_PR_SET_PDEATHSIG = 1


def die_with_parent(parent: int, signum: int) -> None:
  """In the child: `signum` when the parent dies; sent at once if `parent` (the pid the child was
  started by) died before the request took effect."""
  try:
    ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, int(signum), 0, 0, 0)
  except (OSError, AttributeError):
    return
  if os.getppid() != parent:
    os.kill(os.getpid(), signum)

