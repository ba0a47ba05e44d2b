"""JAX's persistent compilation cache for every command: programs compiled once are read back
from disk by later processes (a run's restart, a sweep's other runs, a test's subprocess).

    --compilation_cache_dir=DIR   the folder (default: $XDG_CACHE_HOME/sam_edge/jax, else
                                  ~/.cache/sam_edge/jax); '' turns the cache off.

The folder (`resolve`) is exported to the environment before jax is imported, so jax reads it at
import and child processes inherit it: a sweep's runs share one cache. Every compile is cached,
however short (`JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS`, 0 unless set). An unwritable folder
is one warning line, and the command goes on without the cache.

The cache only skips XLA's compilation: a program read back is the executable that XLA built for
the same program, options and devices, so no number changes (tests/test_compilation_cache.py).
The folder grows with every new program and can be deleted at any time. Nothing here imports jax
until `install`.

Entries are written whole (`AtomicFileCache`, put in place of jax's own file cache by `install`).
jax's file cache (`jax._src.lru_cache.LRUCache`) writes an entry straight into its file: a
process killed while writing, or a full disk, leaves a truncated entry that every later run
fails to read (one warning each) and never replaces. Here each entry is written to a temporary
file in the folder and renamed into place, with the permissions the user's umask gives (a
folder shared by a group stays shared). A write that fails is one warning line, the first time;
the run goes on compiling what it cannot read back. jax's own cache stays in place where this
one would drop one of its settings: a size limit (`JAX_COMPILATION_CACHE_MAX_SIZE`), checked
contents, or a folder that is not on a local disk (`gs://...`).
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
XLA_CACHES_ENV = "JAX_PERSISTENT_CACHE_ENABLE_XLA_CACHES"
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
  nothing when $JAX_ENABLE_COMPILATION_CACHE is false (jax's "disabled regardless"), else
  $JAX_COMPILATION_CACHE_DIR, else the per-user default."""
  if flag_value is not None:
    return flag_value or None
  if environ.get(ENABLE_ENV, "").strip().lower() in FALSE:
    return None
  return environ.get(DIR_ENV) or default_dir(environ)


def configure(flag_value: Optional[str], prog: str,
              environ: MutableMapping[str, str] = os.environ) -> Optional[str]:
  """Chooses the folder (`resolve`), checks that it is writable (else one warning line on
  stderr, and no cache) and exports the choice to `environ`, where jax reads it at import (or
  `install`, once jax is imported). Returns the folder in use, or None."""
  folder = resolve(flag_value, environ)
  if folder is not None and "://" not in folder:            # a remote folder: jax's to check
    folder = os.path.abspath(os.path.expanduser(folder))
    try:                                                    # made if missing, then a probe file
      os.makedirs(folder, exist_ok=True)
      with tempfile.NamedTemporaryFile(dir=folder, prefix=".probe-"):
        pass
    except OSError as e:
      print(f"{prog}: warning: the compilation cache {folder} cannot be written "
            f"({e.strerror or str(e)}); going on without it", file=sys.stderr, flush=True)
      folder = None
  if folder is None:
    environ.pop(DIR_ENV, None)
    environ[ENABLE_ENV] = "false"
  else:
    environ[DIR_ENV] = folder
    environ.pop(ENABLE_ENV, None)
    environ.setdefault(MIN_TIME_ENV, "0")
  return folder


def umask() -> int:
  """The process's umask (read by setting it, and set back at once)."""
  mask = os.umask(0o022)
  os.umask(mask)
  return mask


class AtomicFileCache:
  """A folder of entries `<key>-cache`, each written whole (jax's `CacheInterface`: `get`,
  `put` and `_path`); no eviction."""

  def __init__(self, path: str):
    self._path = pathlib.Path(path)
    self._path.mkdir(parents=True, exist_ok=True)
    self._mode = 0o666 & ~umask()        # what an ordinary `open` gives (mkstemp's are 0o600)
    self.failed = False

  def _file(self, key: str) -> pathlib.Path:
    """The entry's file (jax's name for it, so that either cache reads the other's)."""
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
      os.fchmod(fd, self._mode)
      with os.fdopen(fd, "wb") as f:
        f.write(value)
      os.replace(tmp, target)
    except OSError as e:
      if tmp is not None:
        pathlib.Path(tmp).unlink(missing_ok=True)
      self.failed = True
      print(f"warning: could not write to the compilation cache {self._path} "
            f"({e.strerror or e}); going on without writing to it", file=sys.stderr, flush=True)


def keeps_jax_cache(folder: str) -> bool:
  """Whether jax's own file cache must stay: a setting only it honours, or a remote folder."""
  import jax  # pylint: disable=import-outside-toplevel
  return (jax.config.jax_compilation_cache_max_size != -1
          or jax.config.jax_compilation_cache_check_contents or "://" in folder)


def install(environ: Mapping[str, str] = os.environ) -> None:
  """Applies the exported choice to jax's config (jax imported here), then puts an
  `AtomicFileCache` of the folder in place of jax's file cache (before or after jax's first
  compile, under jax's own lock), or, with no folder or where jax's cache must stay
  (`keeps_jax_cache`), resets jax's cache so that jax builds its own from its config at its next
  compile. jax's private module is read defensively: if it changed, jax's own cache is left
  alone. XLA's own GPU caches beside it (per-fusion autotuning), which XLA writes itself and a
  full disk would make fatal, stay off unless $JAX_PERSISTENT_CACHE_ENABLE_XLA_CACHES asks for
  them."""
  import jax  # pylint: disable=import-outside-toplevel
  from jax._src import compilation_cache as jcc  # pylint: disable=import-outside-toplevel
  off = environ.get(ENABLE_ENV, "").strip().lower() in FALSE
  folder = None if off else environ.get(DIR_ENV)
  jax.config.update("jax_persistent_cache_min_compile_time_secs",
                    float(environ.get(MIN_TIME_ENV, "0")))
  if XLA_CACHES_ENV not in environ:
    jax.config.update("jax_persistent_cache_enable_xla_caches", "none")
  jax.config.update("jax_enable_compilation_cache", folder is not None)
  if folder is not None:
    jax.config.update("jax_compilation_cache_dir", folder)
  names = ("_cache", "_cache_initialized", "_cache_checked", "_cache_used",
           "_cache_initialized_mutex", "reset_cache")
  if not all(hasattr(jcc, name) for name in names):
    return
  current = jcc._cache
  if folder is None or keeps_jax_cache(folder):
    if isinstance(current, AtomicFileCache) or (
        current is not None and (folder is None or str(current._path) != folder)):
      jcc.reset_cache()
    return
  if isinstance(current, AtomicFileCache) and current._path == pathlib.Path(folder):
    return
  try:
    store = AtomicFileCache(folder)
  except OSError:
    jcc.reset_cache()
    return
  with jcc._cache_initialized_mutex:
    jcc._cache = store
    jcc._cache_initialized = True
    jcc._cache_checked = False
    jcc._cache_used = False
