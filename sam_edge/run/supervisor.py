"""A run's work goes on in a worker thread; the main thread only waits and answers signals.

Python runs signal handlers in the main thread, and only between bytecodes: while the main thread
is inside a long call into C (TFDS preparing a dataset, XLA compiling the first step) a Ctrl-C
would wait, unacknowledged, until that call returns. So the job runs in a worker thread and the
main thread waits in short, interruptible joins:

  * a first SIGINT/SIGTERM before anything has been computed (data loading, compiling, the first
    measurement) exits at once with one line and exit code 130/143: nothing would be kept anyway;
  * a first signal once training has produced something asks the loop to stop after the current
    step (`stop`), after which the job writes every output;
  * after that, a SIGINT (a second Ctrl-C) exits at once with one line naming the outputs that
    exist (exit 130/143). A SIGTERM asks again for the stop already asked for: Linux delivers a
    parent-death signal (`PR_SET_PDEATHSIG`, which a sweep asks for) once per thread of the dying
    parent, and on a loaded machine the copies come seconds apart, before `getppid` changes;
    schedulers (Slurm, Kubernetes) send SIGTERM once and SIGKILL after their grace period.

Exceptions of the job are re-raised in the main thread, with their traceback.
"""

import os
import signal
import sys
import threading
from typing import Any, Callable

from sam_edge.run import loop

EXIT_CODES = {"interrupted": 130, "terminated": 143}
REASONS = {signal.SIGINT: "interrupted", signal.SIGTERM: "terminated"}
POLL_S = 0.1


class Supervisor:
  """What the job shares with the main thread (see module doc).

  The job sets `phase` (words for "what is going on", e.g. "loading data"), calls
  `mark_computed()` once something worth keeping exists, and may set `kept` (a function listing
  the outputs that exist) and `cleanup` (run before an immediate exit, e.g. to release a lock).
  """

  def __init__(self, err: Callable[[str], None] = None):
    self.stop = loop.StopFlag()
    self.phase = "starting"
    self.computed = False
    self.kept: Callable[[], list[str]] = lambda: []
    self.cleanup: Callable[[], None] = lambda: None
    self._signals = 0
    self._err = err or (lambda line: print(line, file=sys.stderr, flush=True))

  def mark_computed(self) -> None:
    self.computed = True

  def _exit_now(self, reason: str, line: str) -> None:
    try:
      self.cleanup()
    finally:
      self._err(line)
      sys.stdout.flush()
      sys.stderr.flush()
      os._exit(EXIT_CODES[reason])

  def on_signal(self, signum: int, frame: Any = None) -> None:
    reason = REASONS.get(signum, "interrupted")
    if self._signals and signum == signal.SIGTERM:
      return                                          # the stop asked for already (see module doc)
    self._signals += 1
    if self._signals > 1:
      kept = ", ".join(self.kept()) or "nothing"
      self._exit_now(reason, f"{reason} again: exiting at once; kept: {kept}")
    elif self.computed:
      self.stop.set(reason)
      self._err(f"{reason}: stopping after the current step and writing every output "
                f"(Ctrl-C again to exit at once)")
    else:
      self._exit_now(reason, f"{reason} while {self.phase}: nothing computed yet, exiting")


def run(job: Callable[[Supervisor], Any]) -> Any:
  """Runs `job(supervisor)` in a worker thread under the signal handling of the module doc and
  returns its result (re-raising its exception). From a thread other than the main one, where
  signals cannot be handled, the job simply runs in the caller's thread."""
  sup = Supervisor()
  if threading.current_thread() is not threading.main_thread():
    return job(sup)
  result: dict[str, Any] = {}

  def work():
    try:
      result["value"] = job(sup)
    except BaseException as e:     # handed to the main thread
      result["error"] = e

  saved = {sig: signal.signal(sig, sup.on_signal) for sig in REASONS}
  try:
    worker = threading.Thread(target=work, name="sam-edge-run", daemon=True)
    worker.start()
    while worker.is_alive():
      worker.join(POLL_S)
  finally:
    for sig, handler in saved.items():
      signal.signal(sig, handler)
  if "error" in result:
    raise result["error"]
  return result.get("value")
