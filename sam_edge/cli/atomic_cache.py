"""The store under JAX's persistent compilation cache: entries that appear whole, in the folder
`compilation_cache` chose, put in place of jax's own file cache by `install`.

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
from typing import Optional


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
      os.fchmod(fd, 0o666 & ~umask())
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


def install(folder: Optional[str]) -> None:
  """Puts an `AtomicFileCache` of `folder` in place of jax's file cache (before or after jax's
  first compile, under jax's own lock), or, when `folder` is None or jax's cache must stay,
  resets jax's cache so that jax builds its own from its config at its next compile. jax's
  private module is read defensively: if it changed, jax's own cache is left alone."""
  from jax._src import compilation_cache as jcc  # pylint: disable=import-outside-toplevel
  names = ("_cache", "_cache_initialized", "_cache_checked", "_cache_used",
           "_cache_initialized_mutex", "reset_cache")
  if not all(hasattr(jcc, name) for name in names):
    return
  current = jcc._cache
  atomic = folder is not None and not keeps_jax_cache(folder)
  if not atomic:
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
