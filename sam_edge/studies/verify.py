"""Whether what runs wrote is sound: one `Item` (one line) per pickle, done.json and checkpoint
step found under a path.

A path is
  * a raw pickle (a file): its records and losses against `final.records_sha256`
    (`records.raw_status`; an unfinished run is sound so far, one written before checksums
    existed is sound with nothing to check);
  * a checkpoint folder (it holds step folders): every step read back and checked against its
    checksums (`run.checkpoints.audit`); steps an earlier `--resume` moved aside
    (`<step>.corrupt`) and saves a stop cut short (Orbax's temporary folders) are listed but not
    counted, since no run reads them; a single step folder `<dir>/<step>`: that step;
  * a parameters file (`*.npz`, `--params_output`): its arrays and meta against their checksums;
  * a run folder: its pickle, its parameters file, its done.json (the pickle's sha256 it
    recorded against the file), and its checkpoints (`checkpoints/`, the `--checkpoint_dir` its
    command.txt names, or its one subfolder that holds steps);
  * a sweep folder (it holds sweep.json): every run folder in it.

Nothing is changed anywhere. jax and orbax are imported only when there are checkpoints to read.
"""

import dataclasses
import json
import os

from sam_edge import records
from sam_edge.run import run_folder
from sam_edge.studies import commands, runner, sources


class VerifyError(ValueError):
  """A path that is none of the above (one line naming it)."""


@dataclasses.dataclass(frozen=True)
class Item:
  """One thing checked: its path, whether it is sound, and what was found (one line)."""
  path: str
  sound: bool
  detail: str
  counted: bool = True             # False: listed for information (no run reads it)

  def line(self) -> str:
    state = "not used" if not self.counted else "sound" if self.sound else "UNSOUND"
    return f"{self.path}: {state}: {self.detail}"


def pickle_item(path: str) -> Item:
  """A raw pickle against its checksum."""
  try:
    raw = records.read_raw(path)
  except Exception as e:  # pylint: disable=broad-except  # a damaged pickle raises any kind
    reason = " ".join(f"{type(e).__name__}: {e}".split())[:200]
    return Item(path, False, f"cannot be read as a pickle ({reason})")
  return Item(path, *records.raw_status(raw))


def params_item(path: str) -> Item:
  """A parameters file (`--params_output`) against its checksums."""
  from sam_edge.run import params_file  # pylint: disable=import-outside-toplevel
  try:
    saved = params_file.read(path)
  except params_file.ParamsError as e:
    return Item(path, False, str(e).removeprefix(f"{path}: "))
  return Item(path, True, f"the parameters of step {saved.step} match their sha256 checksums")


def done_items(folder: str, values: dict[str, str], raw_file: str | None) -> list[Item]:
  """A sweep run's done.json, if it has one: the pickle's sha256 it recorded against the file as
  it is (`raw_file`, else the pickle its command `values` name: deleted since)."""
  path = os.path.join(folder, commands.DONE_FILE)
  if not os.path.isfile(path):
    return []
  expected = os.path.join(folder, os.path.basename(values.get("raw_data_output") or "raw.pkl"))
  try:
    with open(path, encoding="utf-8") as f:
      done = json.load(f)
  except (OSError, ValueError) as e:
    return [Item(path, False, f"cannot be read ({type(e).__name__}: {e})")]
  if not isinstance(done, dict):
    return [Item(path, False, "is not a JSON object")]
  if not done.get(runner.PICKLE_SHA256):
    return [Item(path, True, "written before checksums existed: nothing to compare")]
  changed = runner.pickle_changed(done, raw_file or expected)
  if changed:
    return [Item(path, False, changed + " (a rerun of the sweep runs it again)")]
  return [Item(path, True, f"the pickle matches its recorded {runner.PICKLE_SHA256}")]


def checkpoint_items(directory: str) -> list[Item]:
  """Every step of a checkpoint folder (or the one step of a step folder), checked."""
  from sam_edge.run import checkpoints  # pylint: disable=import-outside-toplevel  # jax, orbax
  if checkpoints.is_step_folder(directory):
    base, name = os.path.split(os.path.normpath(directory))
    found, unused = checkpoints.audit(base, int(name)), []
  else:
    base = directory
    found, unused = checkpoints.audit(directory), checkpoints.unused_entries(directory)
  items = [Item(os.path.join(base, str(c.step)), c.problem is None,
                c.problem or c.note or "its arrays and meta match their sha256 checksums")
           for c in found]
  return items + [Item(os.path.join(base, name), False,
                       "moved aside as unsound by an earlier --resume" if ".corrupt" in name
                       else "a save cut short (removed when a run next opens the folder)",
                       counted=False)
                  for name in unused]


def _checkpoint_folder(folder: str, values: dict[str, str]) -> str | None:
  """A run folder's checkpoint folder, if it has one (module doc)."""
  for path in (os.path.join(folder, commands.CHECKPOINTS), values.get("checkpoint_dir")):
    if path and os.path.isdir(path):
      return path
  from sam_edge.run import checkpoints  # pylint: disable=import-outside-toplevel  # jax, orbax
  found = [entry.path for entry in os.scandir(folder)
           if entry.is_dir() and checkpoints.holds_steps(entry.path)]
  return found[0] if len(found) == 1 else None


def run_folder_items(folder: str) -> list[Item]:
  """A run folder's pickle, done.json and checkpoints; a sweep run without outputs yet is one
  sound item saying so."""
  argv = run_folder.read_command(folder)
  values = run_folder.command_values(argv) if argv else {}
  raw_file = sources.pickle_in(folder, values)
  items = [pickle_item(raw_file)] if raw_file else []
  params = run_folder.params_in(folder, values)
  if params:
    items.append(params_item(params))
  items += done_items(folder, values, raw_file)
  ck = _checkpoint_folder(folder, values)
  if ck:
    items += checkpoint_items(ck)
  if not items and argv is not None:
    items.append(Item(folder, True, "no outputs yet"))
  return items


def items(path: str) -> list[Item]:
  """Everything checked under `path`; raises VerifyError for a path that holds nothing to check."""
  if os.path.isfile(path):
    return [params_item(path) if path.endswith(".npz") else pickle_item(path)]
  if not os.path.isdir(path):
    raise VerifyError(f"{path}: no such file or folder")
  if os.path.isfile(os.path.join(path, sources.SWEEP_FILE)):
    names, _ = sources.sweep_plan(path)
    return [item for name in names for item in run_folder_items(os.path.join(path, name))]
  from sam_edge.run import checkpoints  # pylint: disable=import-outside-toplevel  # jax, orbax
  if checkpoints.is_step_folder(path) or checkpoints.holds_steps(path):
    return checkpoint_items(path)
  found = run_folder_items(path)
  if not found:
    raise VerifyError(f"{path}: holds no raw pickle, {commands.DONE_FILE}, checkpoints, "
                      f"{commands.COMMAND_FILE} or {sources.SWEEP_FILE}: nothing to verify")
  return found
