"""`python -m sam_edge.compare PATHS... --out=DIR`: a summary table and overlays of finished (or
half-finished) runs.

PATHS are run folders, raw pickles, the reference's raw.txt files, or sweep folders, in any mix.
Writes summary.csv, lambda1_over_edge.pdf, loss_curves.pdf, metric_vs_<axis>.pdf and, with
--phase_axes, phase.pdf into DIR. See README, "Studies".

Every pickle is checked against its `final.records_sha256`: a run whose pickle does not match is
left out of the report, with one line on stderr naming it; the exit code is then 1 (0 when every
run was sound, 2 for bad input).
"""

import sys

from absl import flags

from sam_edge.cli import main as cli
from sam_edge.studies import phase, report, sources

PROG = "compare"
USAGE = ("python -m sam_edge.compare PATHS... --out=DIR [--phase_axes=a,b] [--phase_metric=m] "
         "[--x_axis=auto|step|time]")


def main(argv: list[str]) -> int:
  """Parses `argv` (without the program name), reads the runs and writes the report."""
  fv = flags.FlagValues()
  report.define_flags(fv)
  return cli.command(PROG, USAGE, fv, argv, lambda paths: compare(fv, paths))


def compare(fv: flags.FlagValues, paths: list[str]) -> int:
  """Reads the runs under `paths` and writes the report into --out."""
  if not fv.out:
    return cli.fail(PROG, ["--out=DIR is required"])
  if not paths:
    return cli.fail(PROG, [f"give at least one path: {USAGE}"])
  try:
    runs, sweep_axes = sources.read_paths(paths)
  except (sources.SourceError, OSError, ValueError) as e:
    return cli.fail(PROG, [str(e)])
  if not runs:
    return cli.fail(PROG, ["no runs found under " + " ".join(paths)])
  sound = report.sound_runs(runs, log=lambda line: print(f"{PROG}: {line}", file=sys.stderr))
  if not sound:
    return cli.fail(PROG, ["every run is unsound (see the lines above): nothing to compare"],
                    code=1)
  try:
    report.write(sound, sweep_axes, fv.out, report.options_of(fv),
                 log=lambda line: print(f"{PROG}: {line}"))
  except phase.PhaseError as e:
    return cli.fail(PROG, [str(e)])
  return 0 if len(sound) == len(runs) else 1


if __name__ == "__main__":
  sys.exit(main(sys.argv[1:]))
