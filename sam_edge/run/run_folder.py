"""A run folder as a sweep leaves it, read without jax: its `command.txt`, the flags typed on
that command, and the parameters file (`--params_output`) it holds.

    argv = read_command("sweep/mlp_width=8")             # None when there is no command.txt
    values = command_values(argv or [])                  # {"mlp_width": "8", ...}
    params_path("sweep/mlp_width=8")                     # ".../params.npz"; a file stays itself

Both the studies (which read sweeps) and a run's `--init_params` resolve a run folder here.
"""

import glob
import os
import shlex
from typing import Optional

from sam_edge import errors, records

COMMAND_FILE = "command.txt"


def read_command(folder: str) -> Optional[list[str]]:
  """The argv in `folder`/command.txt, or None if there is none."""
  try:
    with open(os.path.join(folder, COMMAND_FILE), encoding="utf-8") as f:
      return shlex.split(f.read(), comments=True)     # the working-directory line is a comment
  except FileNotFoundError:
    return None


def flag_name(arg: str) -> Optional[str]:
  """The name in `--name`, `--name=value`, `-name` or `-name=value`; None for other arguments."""
  if not arg.startswith("-") or arg in ("-", "--"):
    return None
  return arg.lstrip("-").split("=", 1)[0] or None


def command_values(argv: list[str]) -> dict[str, str]:
  """{flag: value} of the `--flag=value` arguments of a command."""
  return {flag_name(a): a.split("=", 1)[1] for a in argv if flag_name(a) and "=" in a}


def output_in(folder: str, values: dict[str, str], flag: str, default: str) -> Optional[str]:
  """An output of a run folder: the file its command's --`flag` names, else `default`, else the
  folder's only file with `default`'s extension; None if there is none."""
  named = [os.path.join(folder, os.path.basename(values[flag]))] if values.get(flag) else []
  found = sorted(glob.glob(os.path.join(folder, "*" + os.path.splitext(default)[1])))
  candidates = [*named, os.path.join(folder, default), *(found if len(found) == 1 else [])]
  return next((c for c in candidates if os.path.isfile(c)), None)


def params_in(folder: str, values: dict[str, str]) -> Optional[str]:
  """The parameters file of a run folder (`--params_output`, else params.npz, else its *.npz)."""
  return output_in(folder, values, records.PARAMS.name, records.SWEEP_FILES[records.PARAMS.name])


def params_path(path: str) -> str:
  """The parameters file of `path`: the path itself if a file, else that of the run folder `path`
  (`params_in`); InputError (one line) if there is none."""
  if os.path.isfile(path):
    return path
  if not os.path.isdir(path):
    raise errors.InputError(f"{path}: no such file or run folder")
  found = params_in(path, command_values(read_command(path) or []))
  if found:
    return found
  raise errors.InputError(f"{path}: holds no parameters file (run it with "
                          f"--{records.PARAMS.name}=PATH; sweeps write "
                          f"{records.SWEEP_FILES[records.PARAMS.name]})")
