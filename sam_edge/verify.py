"""`python -m sam_edge.verify PATH...`: whether the pickles, done.json files and checkpoints under
each PATH (a raw pickle, a run folder, a sweep folder, a checkpoint folder or one step of it) are
sound, one line per item: `PATH: sound: ...`, `PATH: UNSOUND: what is wrong`, or `PATH: not
used: ...` for what no run reads (steps moved aside, saves cut short). See studies/verify.py.

Exit code: 0 when every item is sound, 1 when some are not, 2 for bad input (a missing path, a
folder that holds nothing to check).
"""

import os
import sys

from absl import flags

from sam_edge.cli import main as cli
from sam_edge.studies import verify as checks

PROG = "verify"
USAGE = "python -m sam_edge.verify PATH..."
HELP = (f"{USAGE}\n\n"
        "Checks what runs wrote against their checksums. PATH: a raw pickle, a run folder, a\n"
        "sweep folder, a checkpoint folder or one step of it. One line per item:\n"
        "`PATH: sound: ...`, `PATH: UNSOUND: what is wrong` or `PATH: not used: ...`.\n"
        "Exit code 0 if every item is sound, 1 if not, 2 for bad input.")


def flag_values() -> flags.FlagValues:
  """The command's flags: none of its own (`--compilation_cache_dir` is added as it parses)."""
  return flags.FlagValues()


def main(argv: list[str]) -> int:
  """Parses `argv` (without the program name) and checks every PATH; returns the exit code."""
  return cli.command(PROG, HELP, flag_values(), argv, verify)


def verify(paths: list[str]) -> int:
  """Prints one line per item found under `paths`; 0 if all are sound, 1 if not, 2 if a path is
  bad (a missing path is reported before anything is read)."""
  if not paths:
    return cli.fail(PROG, [f"give at least one path: {USAGE}"])
  missing = [f"{path}: no such file or folder" for path in paths if not os.path.exists(path)]
  if missing:
    return cli.fail(PROG, missing)
  try:
    found = [item for path in paths for item in checks.items(path)]
  except checks.VerifyError as e:
    return cli.fail(PROG, [str(e)])
  for item in found:
    print(item.line(), flush=True)
  counted = [item for item in found if item.counted]
  unsound = [item for item in counted if not item.sound]
  print(f"{PROG}: {len(counted) - len(unsound)} of {len(counted)} items sound"
        + (f", {len(unsound)} UNSOUND" if unsound else "")
        + (f" ({len(found) - len(counted)} not used)" if len(found) > len(counted) else ""),
        flush=True)
  return 1 if unsound else 0


if __name__ == "__main__":
  sys.exit(main(sys.argv[1:]))
