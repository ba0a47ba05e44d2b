"""Resumable checkpoints of a run: arrays with Orbax, host-side progress and config as JSON.

What a checkpoint holds, at step `int(state.step)`:

  * `arrays`: `{"state": TrainState, "v_prev": eigenvector warm start[, "ema": the weights'
    moving average]}` (Orbax StandardSave; `checkpoint_layout`);
  * `meta`:   `{"progress": loop.Progress as a dict, "config": {flag: value}, "sha256": ...}`
    (Orbax JsonSave), in the strict JSON of meta_json.py (every float reads back exactly);
    "sha256" holds the checksums of every array and of the progress and config (checksums.py).
    A step is *sound* when it restores whole and matches them; `restore`, `newest_sound` and
    `audit` check it.

Nothing else is needed to resume: every PRNG key is derived from the seed in the config, and the
batch of step s is a pure function of (seed, s), so the step counter in the state plus the config
*are* the data order, the position in it and the PRNG state.

Crash safety (orbax-checkpoint 0.12.8, local filesystem): a step is written into
`<dir>/<step>.orbax-checkpoint-tmp/`, which gets `commit_success.txt` and is then renamed to
`<dir>/<step>/` (`orbax/checkpoint/_src/path/atomicity.py`). Only names without the tmp suffix
count as checkpoints (`orbax/checkpoint/_src/path/step.py`), so a kill mid-save leaves the previous
checkpoint as the latest one plus an inert tmp folder, removed when a `Checkpointer` next opens
the folder. Old steps are deleted (max_to_keep) only after the new one is finalised.
"""

import os
import re
import shutil
from typing import NamedTuple, Optional

import jax

from sam_edge import records
from sam_edge.optim import update
from sam_edge.pytree import PyTree
from sam_edge.run import checkpoint_layout, checksums, devices, library_noise, locks, loop
from sam_edge.run.meta_json import decode_json, encode_json, progress_from_json, progress_to_json

MAX_TO_KEEP = 2
ARRAYS_ITEM = "arrays"
META_ITEM = "meta"
TMP_SUFFIX = ".orbax-checkpoint-tmp"          # orbax's atomicity_types.TMP_DIR_SUFFIX
ORBAX_ROOT_FILES = ("_ROOT_METADATA",)        # orbax's own files at the top of a manager's folder
_STEP_NAME = re.compile(r"^\d+$")
_QUARANTINED = re.compile(r"^\d+\.corrupt(\.\d+)?$")   # unsound steps moved aside on resume


def _ocp():
  """orbax.checkpoint, imported when a checkpoint is first written or read (a run without
  checkpoints never pays its import)."""
  import orbax.checkpoint as ocp  # pylint: disable=import-outside-toplevel
  return ocp


def abstract_tree(template: PyTree) -> PyTree:
  """Shapes, dtypes and shardings of `template`'s arrays (arrays or ShapeDtypeStructs)."""
  return jax.tree.map(_ocp().utils.to_shape_dtype_struct, template)


class Unsound(ValueError):
  """A checkpoint step that does not match its checksums (one line saying which array)."""


class Checkpointer:
  """Saves and restores a run's resumable state in one folder (the last MAX_TO_KEEP steps).

  Usable as a context manager; `close()` waits for nothing pending (every save is complete when
  `save` returns) and releases Orbax's threads. `checksums=False` writes steps as they were
  before checksums existed (benchmarks/checkpoint_cost.py measures the difference);
  `read_only=True` opens an existing folder to read it and changes nothing in it (no folder
  created, no leftover temporary folder removed: a running save may own it).
  """

  def __init__(self, directory: str, max_to_keep: int = MAX_TO_KEEP, *, checksums: bool = True,
               read_only: bool = False):
    self.directory = os.path.abspath(directory)
    self.checksums = checksums
    self.read_only = read_only
    library_noise.silence()
    ocp = _ocp()
    options = ocp.CheckpointManagerOptions(
        read_only=read_only, max_to_keep=None if read_only else max_to_keep, create=not read_only,
        cleanup_tmp_directories=not read_only)
    self._manager = ocp.CheckpointManager(self.directory, options=options)

  def __enter__(self) -> "Checkpointer":
    return self

  def __exit__(self, *exc: object) -> None:
    self.close()

  def close(self) -> None:
    """Waits for pending work and releases Orbax's resources; removes what failed saves left."""
    try:
      self._manager.close()
    finally:
      if not self.read_only:
        self._remove_unfinished()

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
    arrays = checkpoint_layout.arrays_of(state, v_prev)
    meta = {"progress": progress_to_json(progress), "config": encode_json(config)}
    if self.checksums:
      meta = checksums.DeferredMeta(arrays, meta)   # hashed while orbax writes the arrays
    ocp = _ocp()
    args = ocp.args.Composite(**{ARRAYS_ITEM: ocp.args.StandardSave(arrays),
                                 META_ITEM: ocp.args.JsonSave(meta)})
    try:
      with library_noise.saving():
        self._manager.save(step, args=args, force=True)
        self._manager.wait_until_finished()
    except BaseException:
      self._remove_unfinished(step)
      raise
    finally:
      if self.checksums:
        meta.join()
    return True

  def _remove_unfinished(self, step: Optional[int] = None) -> None:
    """Removes Orbax's temporary folder of a failed save of `step` (any step if None), e.g. on a
    full disk. A TensorStore write still under way may bring one back: `close` removes it again;
    what cannot be removed stays (`verify` reports it; the next `Checkpointer` removes it)."""
    if not devices.is_writer():         # process 0 cleans the (shared) folder
      return
    try:
      names = os.listdir(self.directory)
    except OSError:                     # an unreadable folder: the save's own error says why
      return
    for name in names:
      owner = name.split(".")[0]
      if TMP_SUFFIX in name and owner.isdigit() and (step is None or int(owner) == step):
        shutil.rmtree(os.path.join(self.directory, name), ignore_errors=True)

  def restore(self, state_template: update.TrainState, v_template: PyTree,
              step: Optional[int] = None
              ) -> tuple[update.TrainState, PyTree, loop.Progress, dict]:
    """(state, v_prev, progress, config) of `step` (default: the latest complete checkpoint).

    Arrays come back as jax arrays with the templates' tree structure, shapes, dtypes and
    shardings; the templates may hold arrays or `jax.ShapeDtypeStruct`s.
    Raises FileNotFoundError if the folder holds no checkpoint, and Unsound if what was read does
    not match the step's checksums.
    """
    step = self.latest_step() if step is None else step
    if step is None:
      raise FileNotFoundError(f"no complete checkpoint in {self.directory}")
    arrays, meta = self._read(
        step, item=abstract_tree(checkpoint_layout.arrays_of(state_template, v_template)))
    wrong, _ = checksums.problem(meta, arrays)
    if wrong:
      raise Unsound(f"the checkpoint of step {step} in {self.directory}: {wrong}")
    return (checkpoint_layout.state_of(arrays), arrays["v_prev"],
            progress_from_json(meta["progress"]), decode_json(meta["config"]))

  def _read(self, step: int, **restore: object) -> tuple[object, object]:
    """(arrays, meta) of `step` as Orbax reads them; `restore`: `StandardRestore`'s arguments."""
    ocp = _ocp()
    restored = self._manager.restore(step, args=ocp.args.Composite(**{
        ARRAYS_ITEM: ocp.args.StandardRestore(**restore), META_ITEM: ocp.args.JsonRestore()}))
    return restored[ARRAYS_ITEM], restored[META_ITEM]


class StepCheck(NamedTuple):
  """One step read back whole: `problem` (None if sound), `note` (a sound step's caveat, e.g. no
  checksums) and its meta (None if unsound)."""
  step: int
  problem: Optional[str]
  note: Optional[str] = None
  meta: Optional[dict] = None


def check_step(checkpointer: "Checkpointer", step: int) -> StepCheck:
  """Reads checkpoint `step` back (its meta and every array, without templates; on this process's
  first device when the saved devices are not here) and checks it against its checksums."""
  try:
    arrays, meta = checkpointer._read(step, fallback_sharding=devices.local_sharding())
    if not isinstance(meta, dict) or "config" not in meta or "progress" not in meta:
      return StepCheck(step, "its meta file lacks the config or the progress")
    if not isinstance(arrays, dict) or "state" not in arrays:
      return StepCheck(step, "its arrays lack the training state")
    wrong, note = checksums.problem(meta, arrays)
  except Exception as e:           # orbax/tensorstore raise many kinds: any failure is unsound
    reason = " ".join(str(e).split())
    more = "..." if len(reason) > 160 else ""
    return StepCheck(step, f"{type(e).__name__}: {reason[:160]}{more}")
  return StepCheck(step, wrong, note, None if wrong else meta)


class Soundness(NamedTuple):
  """The newest sound checkpoint (`step`, None if none is), its config and its note (e.g. that
  it holds no checksums), and the newer steps skipped on the way with why."""
  step: Optional[int]
  config: Optional[dict]
  skipped: tuple[tuple[int, str], ...]
  note: Optional[str] = None


def newest_sound(directory: str) -> Soundness:
  """Checks the steps in `directory` from the newest down (`check_step`); the first sound one
  wins."""
  if not os.path.isdir(directory):
    return Soundness(None, None, ())
  skipped = []
  with Checkpointer(directory) as checkpointer:
    for step in reversed(checkpointer.all_steps()):
      found = check_step(checkpointer, step)
      if found.problem is None:
        return Soundness(step, decode_json(found.meta["config"]), tuple(skipped), found.note)
      skipped.append((step, found.problem))
  return Soundness(None, None, tuple(skipped))


def audit(directory: str, step: Optional[int] = None) -> list[StepCheck]:
  """Every complete step of the existing folder `directory` (or only `step`), oldest first,
  checked read-only."""
  with Checkpointer(directory, read_only=True) as checkpointer:
    steps = checkpointer.all_steps() if step is None else [step]
    return [check_step(checkpointer, s) for s in steps]


def unused_entries(directory: str) -> list[str]:
  """The entries of a checkpoint folder no run reads: steps moved aside as unsound
  (`<step>.corrupt`) and saves a stop cut short (Orbax's temporary folders), by name."""
  return sorted(name for name in os.listdir(directory) if _QUARANTINED.match(name)
                or TMP_SUFFIX in name and os.path.isdir(os.path.join(directory, name)))


def is_step_folder(path: str) -> bool:
  """Whether `path` is one step of a checkpoint folder (`<dir>/<step>` with Orbax's items)."""
  return bool(_STEP_NAME.match(os.path.basename(os.path.normpath(path)))) and any(
      os.path.exists(os.path.join(path, item)) for item in (ARRAYS_ITEM, META_ITEM))


def holds_steps(path: str) -> bool:
  """Whether the folder `path` holds checkpoint steps or what is left of them (read by name)."""
  return any(_QUARANTINED.match(name) or TMP_SUFFIX in name
             or is_step_folder(os.path.join(path, name)) for name in os.listdir(path))


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
  return sorted(name for name in names if encode_json(saved.get(name, missing))
                != encode_json(current.get(name, missing)))


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
  unused = set(unused_entries(path))
  stray = sorted(name for name in os.listdir(path)
                 if name not in unused and not _is_orbax_entry(path, name))
  if stray:
    more = f" (and {len(stray) - 1} more)" if len(stray) > 1 else ""
    return (f"{path} holds entries that are not Orbax checkpoints, e.g. {stray[0]!r}{more}: "
            "use an empty or new folder")
  return None


def _is_orbax_entry(folder: str, name: str) -> bool:
  """Whether `folder/name` is a step folder, Orbax's root metadata or the lock file."""
  full = os.path.join(folder, name)
  if name == locks.LOCK_NAME:
    return os.path.isfile(full)
  return name in ORBAX_ROOT_FILES or bool(_STEP_NAME.match(name)) and os.path.isdir(full)
