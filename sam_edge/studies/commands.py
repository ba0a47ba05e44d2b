"""An entry point seen from a sweep: its output flags, a run's command line, and flag checks.

The sweep owns every flag whose name ends in `_output`, `checkpoint_dir` and `resume`: run `r`
of a sweep in DIR writes output `--X_output` into `DIR/r/<file>` (the basename of the flag's
default, or for a default of '' its name in `records.SWEEP_FILES`, e.g. `params.npz`), its
checkpoints into `DIR/r/checkpoints`, and always gets `--resume` (a fresh start without a
checkpoint); `--tensorboard_dir=D` becomes `D/r`. Two commands are the same when their entry
point and their arguments but those and `--compilation_cache_dir` are equal: the interpreter and
the folder's absolute path may differ, so a sweep on a shared disk resumes from any machine.
"""

import importlib
import os
import shlex
import sys
import tempfile
from types import ModuleType
from typing import Optional

from absl import flags

from sam_edge import records
from sam_edge.run.run_folder import COMMAND_FILE
from sam_edge.studies import grid

ENTRY_POINTS = ("image_classification", "transformer")
CHECKPOINTS = "checkpoints"
LOG_FILE = "log.txt"
DONE_FILE = "done.json"
LOCK_FILE = "run.lock"
TENSORBOARD = "tensorboard_dir"
RESERVED = (COMMAND_FILE, LOG_FILE, DONE_FILE, LOCK_FILE, CHECKPOINTS)


def load_entry(name: str) -> ModuleType:
  """The entry-point module `name` (its import only defines flags)."""
  if name not in ENTRY_POINTS:
    raise grid.GridError(f"unknown entry point {name!r}; use one of {', '.join(ENTRY_POINTS)}")
  return importlib.import_module(name)


def output_files(fv: flags.FlagValues) -> dict[str, str]:
  """{output flag: file name in the run folder}, from the flags' defaults, made unique."""
  files: dict[str, str] = {}
  for name in sorted(n for n in fv if n.endswith("_output")):
    default = fv[name].default or records.SWEEP_FILES.get(name)
    base = os.path.basename(str(default)) if default else name.removesuffix("_output")
    if base in files.values() or base in RESERVED:
      base = f"{name.removesuffix('_output')}_{base}"
    files[name] = base
  return files


def owned_flags(fv: flags.FlagValues) -> set[str]:
  """The flags a sweep sets itself: the outputs, `checkpoint_dir` and `resume`."""
  return set(output_files(fv)) | {"checkpoint_dir", "resume"}


def _flag(arg: str, fv: flags.FlagValues) -> Optional[str]:
  """The flag `arg` sets (`--noresume` -> `resume` for boolean flags); None for a non-flag."""
  name = grid.flag_name(arg)
  if name and name not in fv and name.startswith("no") and name[2:] in fv:
    return name[2:]
  return name


def owned_problems(args: list[str], fv: flags.FlagValues) -> list[str]:
  """One line per argument that sets a flag the sweep owns (or --tensorboard_dir without `=`)."""
  found = []
  for arg in args:
    name = _flag(arg, fv)
    if name in owned_flags(fv):
      found.append(f"{arg}: the sweep sets --{name} itself (each run writes its outputs and "
                   "checkpoints into its own folder under --out); leave it out")
    elif name == TENSORBOARD and "=" not in arg:
      found.append(f"{arg}: write --{TENSORBOARD}=DIR (each run gets DIR/<run name>)")
  return found


def run_args(spec: grid.RunSpec, folder: str, fv: flags.FlagValues) -> list[str]:
  """The run's full argument list: its own arguments, then every output inside `folder`."""
  folder = os.path.abspath(folder)
  args = [f"--{TENSORBOARD}={os.path.join(a.split('=', 1)[1], spec.name)}"
          if grid.flag_name(a) == TENSORBOARD else a for a in spec.args]
  args += [f"--{flag}={os.path.join(folder, name)}" for flag, name in output_files(fv).items()]
  return [*args, f"--checkpoint_dir={os.path.join(folder, CHECKPOINTS)}", "--resume"]


def command(entry: str, args: list[str]) -> list[str]:
  """The argv of a run: this interpreter, `-m entry`, the arguments."""
  return [sys.executable, "-m", entry, *args]


def comparable(argv: list[str], fv: flags.FlagValues) -> list[str]:
  """What two commands must share to be the same run: entry point and non-owned arguments."""
  rest = argv[argv.index("-m") + 1:] if "-m" in argv else argv
  ignored = owned_flags(fv) | {TENSORBOARD, "compilation_cache_dir"}
  return [a for a in rest if _flag(a, fv) not in ignored]


def command_text(argv: list[str]) -> str:
  """The contents of command.txt: the shell-quoted command and the working directory."""
  return f"{shlex.join(argv)}\n# working directory: {os.getcwd()}\n"


def check_args(module: ModuleType, args: list[str]) -> list[str]:
  """Every problem of one run's arguments, as the entry point would report it (reads no data)."""
  fv = module.FLAGS
  try:
    fv.unparse_flags()
    rest = fv([module.PROG, *args])
  except flags.Error as e:
    return [str(e)]
  if len(rest) > 1:
    return [f"unexpected arguments {rest[1:]}"]
  try:
    return list(module.problems(fv))
  except Exception as e:  # pylint: disable=broad-except
    return [f"{type(e).__name__}: {e}"]


def validate(module: ModuleType, runs: list[grid.RunSpec]) -> list[str]:
  """One line per bad run (its problems joined by `; `), checked with outputs in a scratch folder,
  so that nothing is written under the sweep's folder."""
  lines = []
  with tempfile.TemporaryDirectory(prefix="sweep-check-") as scratch:
    folder = os.path.join(scratch, "run")
    os.mkdir(folder)
    for spec in runs:
      found = check_args(module, run_args(spec, folder, module.FLAGS))
      if found:
        lines.append(f"run {spec.name}: " + "; ".join(found))
  module.FLAGS.unparse_flags()
  return lines
