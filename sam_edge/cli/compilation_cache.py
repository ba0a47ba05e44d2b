"""JAX's persistent compilation cache for every command: programs compiled once are read back
from disk by later processes (a run's restart, a sweep's other runs, a test's subprocess).

    --compilation_cache_dir=DIR   the folder (default: $XDG_CACHE_HOME/sam_edge/jax, else
                                  ~/.cache/sam_edge/jax); '' turns the cache off.

Which folder, in order: the flag when given; else `JAX_COMPILATION_CACHE_DIR` when set (or off
when `JAX_ENABLE_COMPILATION_CACHE` is false); else the per-user default. The choice is exported
to the environment before jax is imported, so jax reads it at import and child processes (a
sweep's runs) inherit it: a sweep's runs share one cache. Every compile is cached, however short
(`JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS`, 0 unless set). An unwritable folder is one
warning line, and the command goes on without the cache.

The cache only skips XLA's compilation: a program read back is the executable that XLA built for
the same program, options and devices, so no number changes (tests/test_compilation_cache.py).
Entries are written atomically (a temporary file, then a rename), so a process killed while
writing, or a full disk, never leaves a truncated entry for later runs to stumble on. Nothing
here imports jax until `install`.
"""

import os
import pathlib
import sys
import tempfile
from typing import Mapping, MutableMapping, Optional

from absl import flags

FLAG = "compilation_cache_dir"
DIR_ENV = "JAX_COMPILATION_CACHE_DIR"
ENABLE_ENV = "JAX_ENABLE_COMPILATION_CACHE"
MIN_TIME_ENV = "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS"
FALSE = ("0", "false", "f", "no", "n", "off")


def default_dir(environ: Mapping[str, str] = os.environ) -> str:
  """$XDG_CACHE_HOME/sam_edge/jax, or ~/.cache/sam_edge/jax when XDG_CACHE_HOME is unset."""
  home = environ.get("HOME") or os.path.expanduser("~")
  base = environ.get("XDG_CACHE_HOME") or os.path.join(home, ".cache")
  return os.path.join(base, "sam_edge", "jax")


def define_flag(fv: flags.FlagValues) -> None:
  """Defines --compilation_cache_dir on `fv` (once)."""
  if FLAG not in fv:
    flags.DEFINE_string(FLAG, None, "Folder of JAX's persistent compilation cache, shared by "
                        "every run and command (default: $JAX_COMPILATION_CACHE_DIR when set, "
                        f"else {default_dir()}); '' turns it off. It changes no number.",
                        flag_values=fv)


def resolve(flag_value: Optional[str], environ: Mapping[str, str] = os.environ
            ) -> Optional[str]:
  """The cache folder, or None for no cache: the flag when given (None: not given; '' off), else
  $JAX_COMPILATION_CACHE_DIR, else nothing when $JAX_ENABLE_COMPILATION_CACHE is false, else
  the per-user default."""
  if flag_value is not None:
    return flag_value or None
  if environ.get(DIR_ENV):
    return environ[DIR_ENV]
  if environ.get(ENABLE_ENV, "").strip().lower() in FALSE:
    return None
  return default_dir(environ)


def writable_problem(folder: str) -> Optional[str]:
  """Why the cache cannot be kept in `folder` (created if missing), or None."""
  try:
    os.makedirs(folder, exist_ok=True)
    with tempfile.NamedTemporaryFile(dir=folder, prefix=".probe-"):
      pass
  except OSError as e:
    return e.strerror or str(e)
  return None


def configure(flag_value: Optional[str], prog: str,
              environ: MutableMapping[str, str] = os.environ) -> Optional[str]:
  """Chooses the folder (`resolve`), checks that it is writable (else one warning line on
  stderr, and no cache) and exports the choice to `environ`, where jax reads it at import (or
  `install`, once jax is imported). Returns the folder in use, or None."""
  folder = resolve(flag_value, environ)
  if folder is not None:
    folder = os.path.abspath(os.path.expanduser(folder))
    problem = writable_problem(folder)
    if problem:
      print(f"{prog}: warning: the compilation cache {folder} cannot be written ({problem}); "
            "going on without it", file=sys.stderr, flush=True)
      folder = None
  if folder is None:
    environ.pop(DIR_ENV, None)
    environ[ENABLE_ENV] = "false"
  else:
    environ[DIR_ENV] = folder
    environ.pop(ENABLE_ENV, None)
    environ.setdefault(MIN_TIME_ENV, "0")
  return folder


class AtomicFileCache:
  """jax's file cache (`jax._src.lru_cache.LRUCache` without eviction) whose entries appear
  whole: each is written to a temporary file in the folder and renamed into place. A write that
  fails (the disk full, the folder gone or read-only) is one warning line on stderr, the first
  time; the run goes on compiling what it cannot read back, without writing again."""

  def __init__(self, path: str):
    self._path = pathlib.Path(path)
    self._path.mkdir(parents=True, exist_ok=True)
    self.failed = False

  def _file(self, key: str) -> pathlib.Path:
    if not key:
      raise ValueError("key cannot be empty")
    return self._path / f"{key}-cache"

  def get(self, key: str) -> Optional[bytes]:
    """The entry under `key`, or None (also when the folder cannot be read: a miss)."""
    try:
      return self._file(key).read_bytes()
    except OSError:
      return None

  def put(self, key: str, value: bytes) -> None:
    """Writes the entry unless one exists (the first writer wins, as in jax's cache)."""
    target = self._file(key)
    if self.failed or target.exists():
      return
    tmp = None
    try:
      fd, tmp = tempfile.mkstemp(dir=self._path, prefix=f".{key}-")
      with os.fdopen(fd, "wb") as f:
        f.write(value)
      os.replace(tmp, target)
    except OSError as e:
      if tmp is not None:
        pathlib.Path(tmp).unlink(missing_ok=True)
      self.failed = True
      print(f"warning: could not write to the compilation cache {self._path} "
            f"({e.strerror or e}); going on without writing to it", file=sys.stderr, flush=True)


def install(environ: Mapping[str, str] = os.environ) -> None:
  """Applies the exported choice to jax's config (jax imported here) and puts an
  `AtomicFileCache` in place of jax's file cache, before or after jax's first compile."""
  import jax  # pylint: disable=import-outside-toplevel
  from jax._src import compilation_cache  # pylint: disable=import-outside-toplevel
  off = environ.get(ENABLE_ENV, "").strip().lower() in FALSE
  folder = None if off else environ.get(DIR_ENV)
  jax.config.update("jax_persistent_cache_min_compile_time_secs",
                    float(environ.get(MIN_TIME_ENV, "0")))
  current = getattr(compilation_cache, "_cache", None)
  if folder is None:
    jax.config.update("jax_enable_compilation_cache", False)
    if current is not None:
      compilation_cache.reset_cache()
    return
  jax.config.update("jax_enable_compilation_cache", True)
  jax.config.update("jax_compilation_cache_dir", folder)
  if isinstance(current, AtomicFileCache) and current._path == pathlib.Path(folder):
    return
  compilation_cache.reset_cache()
  compilation_cache._cache = AtomicFileCache(folder)
  compilation_cache._cache_initialized = True
