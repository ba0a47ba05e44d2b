"""The flags `sweep` and `compare` share, and how both parse their command lines.

A malformed or unknown flag is one line on stderr and exit code 2, as for the entry points;
`--help` prints the flags.
"""

import sys
from typing import NoReturn

from absl import flags

from sam_edge.studies import overlay, report


def define_report_flags(fv: flags.FlagValues) -> None:
  """--out, --phase_axes, --phase_metric, --x_axis on `fv`."""
  on = {"flag_values": fv}
  flags.DEFINE_string("out", None, "Folder for summary.csv and the PDFs (for a sweep: also the "
                      "run folders).", **on)
  flags.DEFINE_list("phase_axes", [], "Two axes a,b: write phase.pdf, a heat map of "
                    "--phase_metric over them (mean over seeds).", **on)
  flags.DEFINE_string("phase_metric", None, "Metric of the phase plot: test_error, test_loss, "
                      "final_lambda1, median_lambda1_over_edge or steps (default: test_error if "
                      "present, else test_loss).", **on)
  flags.DEFINE_enum("x_axis", "auto", list(overlay.X_AXES), "x axis of the overlays: step, time "
                    "(training seconds), or auto (time when a reference raw.txt is among the "
                    "runs, since it has no steps; else step).", **on)


def report_options(fv: flags.FlagValues) -> report.Options:
  """The report options from parsed flags."""
  return report.Options(phase_axes=tuple(fv.phase_axes), phase_metric=fv.phase_metric,
                        x_axis=fv.x_axis)


def fail(prog: str, lines: list[str], code: int = 2) -> int:
  """Prints each line as `prog: error: line` on stderr; returns `code`."""
  for line in lines:
    print(f"{prog}: error: {line}", file=sys.stderr)
  return code


def _exit(prog: str, message: str) -> NoReturn:
  fail(prog, [message])
  sys.exit(2)


def parse(fv: flags.FlagValues, prog: str, argv: list[str], usage: str) -> list[str]:
  """Parses `argv` (without the program name) into `fv`; returns the positional arguments."""
  if any(a in ("-h", "--help", "-help", "--helpshort", "--helpfull") for a in argv):
    print(f"usage: {usage}\n")
    print(fv.get_help())
    sys.exit(0)
  try:
    fv.unparse_flags()
    rest = fv([prog, *argv])[1:]
  except flags.Error as e:
    _exit(prog, str(e))
  if not fv.out:
    _exit(prog, "--out=DIR is required")
  return rest
