"""How a run was made: library versions, devices, the project's git commit and the start time.

Stored under the raw pickle's top-level key `environment`, as plain Python values.
"""

import datetime
import importlib.metadata
import os
import platform
import subprocess
from typing import Optional

import jax

# Distribution names on PyPI, keyed by the names used in the pickle.
PACKAGES = {"jax": "jax", "jaxlib": "jaxlib", "flax": "flax", "haiku": "dm-haiku",
            "optax": "optax", "numpy": "numpy"}
REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def package_version(distribution: str) -> Optional[str]:
  """The installed version of `distribution`, or None if it is not installed (read from its
  metadata: nothing is imported)."""
  try:
    return importlib.metadata.version(distribution)
  except importlib.metadata.PackageNotFoundError:
    return None


def git_commit(repo: str = REPO) -> Optional[dict]:
  """{"commit": sha, "dirty": bool} of the checkout holding this package, or None when it is not
  run from a git checkout (or git is missing)."""
  if not os.path.exists(os.path.join(repo, ".git")):
    return None
  git = lambda *args: subprocess.run(["git", "-C", repo, *args], capture_output=True, text=True,
                                     timeout=10, check=True).stdout.strip()
  try:
    return {"commit": git("rev-parse", "HEAD"),
            "dirty": bool(git("status", "--porcelain", "--untracked-files=no"))}
  except (OSError, subprocess.SubprocessError):
    return None


def describe() -> dict:
  """The `environment` dict of a run starting now.

  Keys: `python`, `versions` ({jax, jaxlib, flax, haiku, optax, numpy}), `platform` (the default
  backend, e.g. "cpu"), `device_kind`, `device_count` (all devices, every host),
  `local_device_count`, `process_count`, `git` ({commit, dirty} or None), `start_time` (ISO 8601,
  UTC), `hostname`. The run adds `mesh` (and `resumed_from_step`).
  """
  start_time = datetime.datetime.now(datetime.timezone.utc)
  return {
      "python": platform.python_version(),
      "versions": {name: package_version(dist) for name, dist in PACKAGES.items()},
      "platform": jax.default_backend(),
      "device_kind": jax.devices()[0].device_kind,
      "device_count": jax.device_count(),
      "local_device_count": jax.local_device_count(),
      "process_count": jax.process_count(),
      "git": git_commit(),
      "start_time": start_time.isoformat(),
      "hostname": platform.node(),
  }
