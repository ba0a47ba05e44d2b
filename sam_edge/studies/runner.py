"""One run of a sweep as a subprocess: skipped when done, resumed when not, logged, interruptible.

A run folder holds `command.txt` (written first), `log.txt` (appended across attempts, each
framed by `--- sweep: ...` lines), `done.json` (written after exit code 0; docs/outputs.md) and
`run.lock`. A finished run is skipped on a rerun while its pickle still matches the
`pickle_sha256` of its done.json (and its parameters file, if any, its own checksums); otherwise
it runs again, resuming from its newest sound checkpoint (the end step), so its outputs are
written anew.

The sweep holds the folder's lock (`flock` on run.lock) while the run goes on, and the child
inherits it, so a second sweep waits instead of starting the run twice, also when the first was
killed and its child still writes its checkpoint. The child runs in its own session (a Ctrl-C
reaches only the sweep, which forwards what it gets) and, on Linux, gets SIGTERM when the sweep
dies (`PR_SET_PDEATHSIG`), so that even `kill -9` of the sweep leaves a checkpoint to resume from.
"""

import dataclasses
import datetime
import fcntl
import itertools
import json
import os
import pickle
import signal
import subprocess
import sys
import time
from typing import Callable, Optional

from sam_edge import records
from sam_edge.data import parent_death
from sam_edge.run import params_file, run_folder
from sam_edge.studies import commands

LOCK_POLL_S = 0.5
PICKLE_SHA256 = "pickle_sha256"


@dataclasses.dataclass(frozen=True)
class Outcome:
  """How one run went: `done`, `skipped` (done earlier), `failed` or `stopped` (by a signal)."""
  name: str
  status: str
  code: Optional[int] = None
  detail: str = ""


def _now() -> str:
  return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")


def read_done(folder: str) -> Optional[dict]:
  """The folder's done.json, or None."""
  try:
    with open(os.path.join(folder, commands.DONE_FILE), encoding="utf-8") as f:
      return json.load(f)
  except (FileNotFoundError, ValueError):
    return None


def pickle_changed(done: dict, raw_file: Optional[str]) -> Optional[str]:
  """Why a finished run's pickle no longer matches the `pickle_sha256` of its done.json; None
  when it does or there is nothing to compare (no pickle output, a done.json without one)."""
  expected = done.get(PICKLE_SHA256)
  if not expected or not raw_file:
    return None
  try:
    actual = records.file_sha256(raw_file)
  except FileNotFoundError:
    return f"its pickle {raw_file} is missing"
  except OSError as e:
    return f"its pickle {raw_file} cannot be read ({e.strerror or e})"
  if actual != expected:
    return f"its pickle {raw_file} no longer matches the {PICKLE_SHA256} in {commands.DONE_FILE}"
  return None


def params_changed(params_path: Optional[str]) -> Optional[str]:
  """Why a finished run's parameters file (`--params_output`) is no longer usable: missing, or
  not matching its own checksums (`run.params_file`); None when it is sound or not expected."""
  if not params_path:
    return None
  if not os.path.isfile(params_path):
    return f"its parameters file {params_path} is missing"
  try:
    params_file.read(params_path)
  except params_file.ParamsError as e:
    return f"its parameters file {e}"
  return None


def describe_final(final: dict) -> str:
  """`max_steps after 200 steps, test_error 0.12` from a final dict."""
  parts = [str(final.get("stopped_because", "?"))]
  if final.get("steps") is not None:
    parts[0] += f" after {final['steps']} steps"
  for key in ("test_error", "test_loss"):
    if final.get(key) is not None:
      parts.append(f"{key} {final[key]:.4g}")
  return ", ".join(parts)


class Runner:
  """Runs commands one at a time; SIGINT/SIGTERM to this process are forwarded to the child and
  stop the sweep (`stopped_by` holds the first such signal). Use as a context manager."""

  def __init__(self, log: Callable[[str], None] = print):
    self.log = log
    self.child: Optional[subprocess.Popen] = None
    self.stopped_by: Optional[int] = None
    self._saved: dict = {}

  def __enter__(self) -> "Runner":
    for sig in (signal.SIGINT, signal.SIGTERM):
      self._saved[sig] = signal.signal(sig, self._on_signal)
    return self

  def __exit__(self, *exc: object) -> None:
    for sig, handler in self._saved.items():
      signal.signal(sig, handler)

  def _on_signal(self, sig: int, frame: object) -> None:
    del frame
    self.stopped_by = self.stopped_by or sig
    if self.child is not None and self.child.poll() is None:
      self.child.send_signal(sig)

  def _lock(self, folder: str, name: str) -> Optional[int]:
    """Opens and locks `folder`/run.lock, waiting while another process holds it; None if this
    sweep was stopped meanwhile."""
    fd = os.open(os.path.join(folder, commands.LOCK_FILE), os.O_RDWR | os.O_CREAT, 0o666)
    for attempt in itertools.count():
      try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return fd
      except BlockingIOError:
        if self.stopped_by:
          os.close(fd)
          return None
        if attempt == 0:
          self.log(f"{name}: another process is running it (run.lock is held); waiting")
        time.sleep(LOCK_POLL_S)

  def run(self, name: str, folder: str, argv: list[str], raw_file: Optional[str],
          env: Optional[dict] = None, label: str = "",
          params_path: Optional[str] = None) -> Outcome:
    """Runs `argv` for the run folder `folder` unless it finished already (module doc);
    `raw_file` is the run's pickle, `params_path` its parameters file, if it writes them."""
    if self.stopped_by:
      return Outcome(name, "stopped")
    os.makedirs(folder, exist_ok=True)
    if run_folder.read_command(folder) is None:
      records.atomic_write_bytes(os.path.join(folder, commands.COMMAND_FILE),
                                 commands.command_text(argv).encode())
    fd = self._lock(folder, name)
    if fd is None:
      return Outcome(name, "stopped")
    try:
      done = read_done(folder)
      if done is not None:
        changed = pickle_changed(done, raw_file) or params_changed(params_path)
        if changed is None:
          return Outcome(name, "skipped", 0, describe_final(done.get("final") or {}))
        self.log(f"{label or name}: finished earlier, but {changed}: running it again")
        os.unlink(os.path.join(folder, commands.DONE_FILE))
      self.log(f"{label or name}: running (log: {os.path.join(folder, commands.LOG_FILE)})")
      return self._attempt(name, folder, argv, raw_file, env, fd)
    finally:
      os.close(fd)                                    # releases the lock (the child has exited)

  def _attempt(self, name: str, folder: str, argv: list[str], raw_file: Optional[str],
               env: Optional[dict], lock_fd: int) -> Outcome:
    parent = os.getpid()              # the child asks Linux for SIGTERM when it dies (module doc)
    with open(os.path.join(folder, commands.LOG_FILE), "ab", buffering=0) as log:
      log.write(f"--- sweep: started {_now()} (resumes from its checkpoint if any) ---\n".encode())
      self.child = subprocess.Popen(
          argv, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, env=env,
          start_new_session=True, pass_fds=(lock_fd,),
          preexec_fn=lambda: parent_death.die_with_parent(parent, signal.SIGTERM))
      try:
        code = self.child.wait()
      finally:
        if self.child.poll() is None:                 # an exception in this process: stop it
          self.child.terminate()
          code = self.child.wait()
        self.child = None
      log.write(f"--- sweep: exit code {code} at {_now()} ---\n".encode())
    if code == 0:
      final, digest = _final(raw_file)
      done = ({"exit_code": 0, "finished": _now(), "final": final}
              | ({PICKLE_SHA256: digest} if digest else {}))
      records.atomic_write_bytes(os.path.join(folder, commands.DONE_FILE),
                                 json.dumps(done, indent=1, default=str).encode())
      return Outcome(name, "done", 0, describe_final(final))
    if self.stopped_by:
      return Outcome(name, "stopped", code)
    return Outcome(name, "failed", code, f"exit code {code}; see {folder}/{commands.LOG_FILE}")


def _final(raw_file: Optional[str]) -> tuple[dict, Optional[str]]:
  """The `final` dict of the run's pickle and the sha256 of the file (({}, None) if unreadable)."""
  if not raw_file:
    return {}, None
  try:
    return dict(records.read_raw(raw_file).get("final") or {}), records.file_sha256(raw_file)
  except (OSError, pickle.UnpicklingError, EOFError, AttributeError) as e:
    print(f"warning: could not read {raw_file}: {e}", file=sys.stderr)
    return {}, None
