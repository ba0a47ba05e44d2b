"""--init_params checked before anything is loaded: the file (or the run folder's file) exists and
its meta is sound, and it was written by the same entry point for the same architecture.

Only the file's meta is read here (`params_file.read_header`: its config and its own checksum);
the run reads the arrays, checks their checksums and merges them (`run.init_params`), and refuses
then a file that shares no parameter array with the network.
"""

from typing import Any

from sam_edge import errors

# The flags whose value fixes the architecture: a file whose config says otherwise is refused.
ARCHITECTURE_FLAGS = ("nn_architecture",)


def problems(f: Any, task: str) -> list[str]:
  """The problems of --init_params for the entry point `task` (one line each; none without it)."""
  given = f.init_params
  if not given:
    return []
  from sam_edge.run import params_file, run_folder  # pylint: disable=import-outside-toplevel
  try:
    header = params_file.read_header(run_folder.params_path(given))
  except errors.InputError as e:
    return [f"--init_params: {e}"]
  if header.task != task:
    return [f"--init_params={given}: written by {header.task}, not {task}: the parameters of "
            "another task"]
  return [f"--init_params={given}: holds a --{flag}={header.config[flag]} network, not "
          f"--{flag}={f[flag].value}; finetuning keeps the architecture"
          for flag in ARCHITECTURE_FLAGS
          if flag in f and flag in header.config and header.config[flag] != f[flag].value]
