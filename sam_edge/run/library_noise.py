"""Keeps the checkpointing library's background noise off a run's terminal.

A failed checkpoint save (a full disk, a folder turned read-only) reaches the run as one exception
from `Checkpointer.save`, reported there in one line. Orbax and TensorStore, which write the
step from background threads and an event loop of their own, report the same failure again, many
times over, through other doors; each is shut here for their reports only:

  * absl's logger: orbax logs the save's traceback from its thread (any record from a file of the
    orbax package);
  * asyncio's logger: "Future exception was never retrieved" for orbax's own writes (a record
    whose exception passed through a file of the orbax package);
  * `sys.unraisablehook`: orbax's coroutines still pending when the save failed are collected
    later, "Exception ignored in: <coroutine object ...>" (a coroutine of the orbax package);
    and TensorStore hands the result of a write that ends after orbax closed its event loop to
    `loop.call_soon_threadsafe`, which raises "Event loop is closed", reported as unraisable.
    That one names no library, so it is dropped only while a save runs (`saving`) and after one
    failed.

Everything else goes through untouched.
"""

import contextlib
import functools
import logging
import os
import sys
import traceback
import types
from typing import Any, Optional

_state = {"saving": 0, "failed": False}


@functools.cache
def _orbax_dir() -> str:
  """The folder of the orbax package, with a trailing separator."""
  import orbax.checkpoint  # pylint: disable=import-outside-toplevel
  return os.path.dirname(os.path.dirname(os.path.abspath(orbax.checkpoint.__file__))) + os.sep


def _in_orbax(filename: str) -> bool:
  return os.path.abspath(filename).startswith(_orbax_dir())


def _closed_loop(value: Optional[BaseException], tb: Optional[types.TracebackType]) -> bool:
  """Whether the exception is asyncio's "Event loop is closed" from `call_soon_threadsafe`."""
  return (isinstance(value, RuntimeError) and str(value) == "Event loop is closed"
          and any(f.f_code.co_name == "call_soon_threadsafe" for f, _ in traceback.walk_tb(tb)))


class _OrbaxRecords(logging.Filter):
  """Drops records logged from orbax's files and records about exceptions that passed there."""

  def filter(self, record: logging.LogRecord) -> bool:
    if _in_orbax(record.pathname):
      return False
    tb = record.exc_info[2] if record.exc_info else None
    return not any(_in_orbax(f.f_code.co_filename) for f, _ in traceback.walk_tb(tb))


def _unraisablehook(previous):
  def hook(unraisable: Any):
    code = getattr(unraisable.object, "cr_code", None)
    if code is not None and _in_orbax(code.co_filename):
      return
    if ((_state["saving"] or _state["failed"])
        and _closed_loop(unraisable.exc_value, unraisable.exc_traceback)):
      return
    previous(unraisable)
  hook.sam_edge_quiet = True
  return hook


def silence() -> None:
  """Installs the filters of the module doc (once; calling again changes nothing)."""
  for name in ("absl", "asyncio"):
    logger = logging.getLogger(name)
    if not any(isinstance(f, _OrbaxRecords) for f in logger.filters):
      logger.addFilter(_OrbaxRecords())
  if not getattr(sys.unraisablehook, "sam_edge_quiet", False):
    sys.unraisablehook = _unraisablehook(sys.unraisablehook)


@contextlib.contextmanager
def saving():
  """Marks a save under way; a save that raises marks the process as having had a failed one."""
  _state["saving"] += 1
  try:
    yield
  except BaseException:
    _state["failed"] = True
    raise
  finally:
    _state["saving"] -= 1
