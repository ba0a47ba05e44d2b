"""Keeps the checkpointing library's background noise off a run's terminal.

A failed checkpoint save (a full disk, a folder turned read-only) reaches the run as one exception
from `Checkpointer.save`, reported there in one line. Orbax and TensorStore, which write the
step from background threads and an event loop of their own, report the same failure again, many
times over, through other doors; each is shut here for their reports only:

  * absl's logger: orbax logs the save's traceback from its thread (any record from an orbax file);
  * asyncio's logger: "Future exception was never retrieved" for orbax's own writes (a record
    whose exception passed through an orbax file);
  * `sys.unraisablehook`: TensorStore hands the result of a write that ends after orbax closed
    its event loop to `loop.call_soon_threadsafe`, and reports the RuntimeError "Event loop is
    closed" as unraisable when the loop is gone (`sys.excepthook` too, should it print it);
    orbax's coroutines still pending when the save failed are collected later, "Exception
    ignored in: <coroutine object ...>" (a coroutine of an orbax file).

Everything else goes through untouched.
"""

import logging
import os
import sys
import types
from typing import Any, Optional

ORBAX = f"{os.sep}orbax{os.sep}"


def _from_orbax(tb: Optional[types.TracebackType]) -> bool:
  """Whether the traceback `tb` passes through a file of orbax."""
  while tb is not None:
    if ORBAX in tb.tb_frame.f_code.co_filename:
      return True
    tb = tb.tb_next
  return False


def _closed_loop(kind: type, value: BaseException, tb: Optional[types.TracebackType]) -> bool:
  """Whether the exception is asyncio's "Event loop is closed" from `call_soon_threadsafe`."""
  if not (isinstance(value, RuntimeError) and str(value) == "Event loop is closed"):
    return False
  while tb is not None:
    if tb.tb_frame.f_code.co_name == "call_soon_threadsafe":
      return True
    tb = tb.tb_next
  return False


class _OrbaxRecords(logging.Filter):
  """Drops absl records logged from orbax's files and asyncio records about orbax's futures."""

  def filter(self, record: logging.LogRecord) -> bool:
    if ORBAX in record.pathname:
      return False
    exc = record.exc_info
    return not (exc and exc[2] is not None and _from_orbax(exc[2]))


def _excepthook(previous):
  def hook(kind, value, tb):
    if not _closed_loop(kind, value, tb):
      previous(kind, value, tb)
  hook.sam_edge_quiet = True
  return hook


def _unraisablehook(previous):
  def hook(unraisable: Any):
    code = getattr(unraisable.object, "cr_code", None)
    if code is not None and ORBAX in code.co_filename:
      return
    if _closed_loop(unraisable.exc_type, unraisable.exc_value, unraisable.exc_traceback):
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
  if not getattr(sys.excepthook, "sam_edge_quiet", False):
    sys.excepthook = _excepthook(sys.excepthook)
  if not getattr(sys.unraisablehook, "sam_edge_quiet", False):
    sys.unraisablehook = _unraisablehook(sys.unraisablehook)
