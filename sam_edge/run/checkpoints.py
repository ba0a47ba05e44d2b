"""Resumable checkpoints of a run: arrays with Orbax, host-side progress and config as JSON.

What a checkpoint holds, at step `int(state.step)`:

  * `arrays`: `{"state": TrainState, "v_prev": eigenvector warm start}` (Orbax StandardSave);
  * `meta`:   `{"progress": loop.Progress as a dict, "config": {flag: value}}` (Orbax JsonSave),
    with ±inf and NaN written as `{"__float__": "inf" | "-inf" | "nan"}` so that the file is
    strict JSON and every float reads back exactly.

Nothing else is needed to resume: every PRNG key is derived from the seed in the config, and the
batch of step s is a pure function of (seed, s), so the step counter in the state plus the config
*are* the data order, the position in it and the PRNG state.

Crash safety (orbax-checkpoint 0.12.8, local filesystem): a step is written into
`<dir>/<step>.orbax-checkpoint-tmp/` (`_get_tmp_directory` in
`orbax/checkpoint/_src/path/atomicity.py`); `AtomicRenameTemporaryPath.finalize` (same file) writes
`commit_success.txt` and then renames the folder to `<dir>/<step>/`. Only folders whose names lack
the tmp suffix count as checkpoints (`validate_atomic_rename_final_path`, used by
`_StandardNameFormat._build_metadata` in `orbax/checkpoint/_src/path/step.py`), so a kill mid-save
leaves the previous checkpoint as the latest one plus an inert tmp folder. Old steps are deleted
(max_to_keep) only after the new one is finalised. Leftover tmp folders are removed when a
`Checkpointer` opens the folder (`cleanup_tmp_directories`).
"""

import dataclasses
import logging
import math
import os
import re
from typing import Any, Optional

import jax
import numpy as np
import orbax.checkpoint as ocp

from sam_edge import records
from sam_edge.optim import update
from sam_edge.run import locks, loop

PyTree = Any

DEFAULT_EVERY_MINUTES = 10.0
MAX_TO_KEEP = 2
ARRAYS_ITEM = "arrays"
META_ITEM = "meta"
TMP_SUFFIX = ".orbax-checkpoint-tmp"          # orbax's atomicity_types.TMP_DIR_SUFFIX
ORBAX_ROOT_FILES = ("_ROOT_METADATA",)        # orbax's own files at the top of a manager's folder
_FLOAT_TAG = "__float__"
_STEP_NAME = re.compile(r"^\d+$")
_QUARANTINED = re.compile(r"^\d+\.corrupt(\.\d+)?$")   # unsound steps moved aside on resume


def encode_json(value: Any) -> Any:
  """`value` with non-finite floats tagged and tuples as lists: strict JSON that round-trips.

  Numpy scalars and arrays become Python numbers and (nested) lists.
  """
  if isinstance(value, (np.ndarray, np.generic)):
    value = value.tolist()
  if isinstance(value, float) and not math.isfinite(value):
    return {_FLOAT_TAG: repr(value)}               # 'inf', '-inf' or 'nan'
  if isinstance(value, dict):
    return {key: encode_json(v) for key, v in value.items()}
  if isinstance(value, (list, tuple)):
    return [encode_json(v) for v in value]
  return value


def decode_json(value: Any) -> Any:
  """The inverse of `encode_json` (tuples come back as lists)."""
  if isinstance(value, dict):
    if set(value) == {_FLOAT_TAG}:
      return float(value[_FLOAT_TAG])
    return {key: decode_json(v) for key, v in value.items()}
  if isinstance(value, list):
    return [decode_json(v) for v in value]
  return value


def progress_to_json(progress: loop.Progress) -> dict:
  """`progress` as strict JSON-ready plain data."""
  return encode_json(dataclasses.asdict(progress))


def progress_from_json(data: dict) -> loop.Progress:
  """The `loop.Progress` that `progress_to_json` wrote (unknown fields are dropped)."""
  known = {field.name for field in dataclasses.fields(loop.Progress)}
  return loop.Progress(**{k: v for k, v in decode_json(data).items() if k in known})


def abstract_tree(template: PyTree) -> PyTree:
  """Shapes, dtypes and shardings of `template`'s arrays (arrays or ShapeDtypeStructs)."""
  return jax.tree.map(ocp.utils.to_shape_dtype_struct, template)


class _QuietOrbax(logging.Filter):
  """Drops orbax's own log records (e.g. the traceback it logs from a background thread when a
  save fails): every failure reaches the caller as an exception, reported in one line there."""

  def filter(self, record: logging.LogRecord) -> bool:
    return f"{os.sep}orbax{os.sep}" not in record.pathname


def _quiet_orbax() -> None:
  logger = logging.getLogger("absl")
  if not any(isinstance(f, _QuietOrbax) for f in logger.filters):
    logger.addFilter(_QuietOrbax())


class Checkpointer:
  """Saves and restores a run's resumable state in one folder (the last MAX_TO_KEEP steps).

  Usable as a context manager; `close()` waits for nothing pending (every save is complete when
  `save` returns) and releases Orbax's threads.
  """

  def __init__(self, directory: str, max_to_keep: int = MAX_TO_KEEP):
    self.directory = os.path.abspath(directory)
    _quiet_orbax()
    options = ocp.CheckpointManagerOptions(max_to_keep=max_to_keep, create=True,
                                           cleanup_tmp_directories=True)
    self._manager = ocp.CheckpointManager(self.directory, options=options)

  def __enter__(self) -> "Checkpointer":
    return self

  def __exit__(self, *exc: object) -> None:
    self.close()

  def close(self) -> None:
    """Waits for pending work and releases Orbax's resources."""
    self._manager.close()

  def all_steps(self) -> list[int]:
    """The steps of the complete checkpoints in the folder, ascending."""
    return sorted(self._manager.all_steps())

  def latest_step(self) -> Optional[int]:
    """The step of the newest complete checkpoint, or None if there is none."""
    return self._manager.latest_step()

  def save(self, state: update.TrainState, v_prev: PyTree, progress: loop.Progress,
           config: dict) -> bool:
    """Writes a checkpoint at step `int(state.step)`, complete (renamed into place) on return.

    Returns False, writing nothing, if a checkpoint of that step already exists: the state at a
    step is a function of the config, and the progress saved with it differs from the current
    one only in its clocks. Raises ValueError if the folder holds a *later* step (a different
    run's checkpoints, or a run that was not resumed from its latest checkpoint).
    """
    step = int(state.step)
    if step in self._manager.all_steps():
      return False
    latest = self.latest_step()
    if latest is not None and latest > step:
      raise ValueError(f"{self.directory} already holds a checkpoint of step {latest}, later than "
                       f"step {step}: resume from it or use another checkpoint folder")
    meta = {"progress": progress_to_json(progress), "config": encode_json(config)}
    args = ocp.args.Composite(**{
        ARRAYS_ITEM: ocp.args.StandardSave({"state": state, "v_prev": v_prev}),
        META_ITEM: ocp.args.JsonSave(meta)})
    self._manager.save(step, args=args, force=True)
    self._manager.wait_until_finished()
    return True

  def restore(self, state_template: update.TrainState, v_template: PyTree,
              step: Optional[int] = None
              ) -> tuple[update.TrainState, PyTree, loop.Progress, dict]:
    """(state, v_prev, progress, config) of `step` (default: the latest complete checkpoint).

    Arrays come back as jax arrays with the templates' tree structure, shapes, dtypes and
    shardings; the templates may hold arrays or `jax.ShapeDtypeStruct`s.
    Raises FileNotFoundError if the folder holds no checkpoint.
    """
    step = self.latest_step() if step is None else step
    if step is None:
      raise FileNotFoundError(f"no complete checkpoint in {self.directory}")
    abstract = abstract_tree({"state": state_template, "v_prev": v_template})
    args = ocp.args.Composite(**{ARRAYS_ITEM: ocp.args.StandardRestore(abstract),
                                 META_ITEM: ocp.args.JsonRestore()})
    restored = self._manager.restore(step, args=args)
    arrays, meta = restored[ARRAYS_ITEM], restored[META_ITEM]
    state = update.TrainState(*arrays["state"])
    return (state, arrays["v_prev"], progress_from_json(meta["progress"]),
            decode_json(meta["config"]))


def _check_step(checkpointer: "Checkpointer", step: int) -> tuple[Optional[str], Optional[dict]]:
  """(why checkpoint `step` cannot be restored, None) or (None, its meta) if it is sound: its
  meta and every array are read back (without templates)."""
  try:
    restored = checkpointer._manager.restore(step, args=ocp.args.Composite(**{
        ARRAYS_ITEM: ocp.args.StandardRestore(), META_ITEM: ocp.args.JsonRestore()}))
    meta = restored[META_ITEM]
    if not isinstance(meta, dict) or "config" not in meta or "progress" not in meta:
      return "its meta file lacks the config or the progress", None
    arrays = restored[ARRAYS_ITEM]
    if not isinstance(arrays, dict) or "state" not in arrays:
      return "its arrays lack the training state", None
  except Exception as e:           # orbax/tensorstore raise many kinds: any failure is unsound
    reason = " ".join(str(e).split())
    return f"{type(e).__name__}: {reason[:160]}{'...' if len(reason) > 160 else ''}", None
  return None, meta


@dataclasses.dataclass(frozen=True)
class Soundness:
  """The newest checkpoint that restores (`step`, None if none does), its config, and the newer
  steps skipped on the way with why."""
  step: Optional[int]
  config: Optional[dict]
  skipped: tuple[tuple[int, str], ...]


def newest_sound(directory: str) -> Soundness:
  """Tries the steps in `directory` from the newest down; the first that restores whole wins."""
  if not os.path.isdir(directory):
    return Soundness(None, None, ())
  skipped = []
  with Checkpointer(directory) as checkpointer:
    for step in reversed(checkpointer.all_steps()):
      reason, meta = _check_step(checkpointer, step)
      if reason is None:
        return Soundness(step, decode_json(meta["config"]), tuple(skipped))
      skipped.append((step, reason))
  return Soundness(None, None, tuple(skipped))


def quarantine(directory: str, step: int) -> str:
  """Moves the unsound step folder aside (renamed `<step>.corrupt`, nothing deleted) so that
  newer saves are not refused; returns the new path."""
  source = os.path.join(directory, str(step))
  target = source + ".corrupt"
  n = 1
  while os.path.lexists(target):
    target, n = f"{source}.corrupt.{n}", n + 1
  os.rename(source, target)
  return target


def has_steps(directory: str) -> bool:
  """Whether `directory` holds any checkpoint step, sound or not (nothing is read)."""
  if not os.path.isdir(directory):
    return False
  with Checkpointer(directory) as checkpointer:
    return bool(checkpointer.all_steps())


def config_differences(saved: dict, current: dict, ignore: tuple[str, ...] = ()) -> list[str]:
  """Sorted names of the flags whose values differ between two configs, or that only one has.

  Values are compared as they round-trip through a checkpoint (tuples equal lists, NaN equals
  NaN, 1 equals 1.0). Names in `ignore` are skipped.
  """
  missing = object()
  names = (set(saved) | set(current)) - set(ignore)
  return sorted(name for name in names
                if not _same_value(saved.get(name, missing), current.get(name, missing)))


def _same_value(a: Any, b: Any) -> bool:
  """Whether two config values are equal once written as checkpoint JSON."""
  return encode_json(a) == encode_json(b)


def check_checkpoint_dir(path: str) -> Optional[str]:
  """Why `path` cannot be used as a checkpoint folder (one line), or None if it can.

  Usable: a folder that can be created (`records.folder_problem`); an existing writable folder that
  is empty or holds only Orbax step folders (integer names), Orbax's leftover temporary folders
  (`*.orbax-checkpoint-tmp*`) and its root metadata file.
  """
  path = os.path.abspath(path)
  if not os.path.lexists(path):
    return records.folder_problem(path)
  if not os.path.isdir(path):
    return f"{path} exists and is not a folder"
  if not os.access(path, os.W_OK | os.X_OK):
    return f"{path} is not writable"
  stray = sorted(name for name in os.listdir(path) if not _is_orbax_entry(path, name))
  if stray:
    more = f" (and {len(stray) - 1} more)" if len(stray) > 1 else ""
    return (f"{path} holds entries that are not Orbax checkpoints, e.g. {stray[0]!r}{more}: "
            "use an empty or new folder")
  return None


def _is_orbax_entry(folder: str, name: str) -> bool:
  """Whether `folder/name` is something CheckpointManager writes at the top of its folder."""
  full = os.path.join(folder, name)
  if name in ORBAX_ROOT_FILES:
    return True
  if name == locks.LOCK_NAME:
    return os.path.isfile(full)
  if _QUARANTINED.match(name):
    return True
  if _STEP_NAME.match(name) or TMP_SUFFIX in name:
    return os.path.isdir(full)
  return False
