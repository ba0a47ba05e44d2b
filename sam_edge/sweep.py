"""`python -m sam_edge.sweep`: run an entry point over a grid of flag values.

    python -m sam_edge.sweep --out=DIR [--aggregate=product|zip] [--shard=I/N] [--dry_run] \\
        [--phase_axes=a,b --phase_metric=m] -- image_classification --rho=0,0.05,0.1 --seed=0,1 ...

A run flag whose value holds commas is an axis; the product (or zip) of the axes gives the runs,
each one process of the entry point writing into DIR/<flag=value,...>/. See README, "Studies".
"""

import sys

from absl import flags

from sam_edge.cli import main as cli
from sam_edge.studies import commands, grid, report, study

PROG = study.PROG
USAGE = ("python -m sam_edge.sweep --out=DIR [--aggregate=product|zip] [--shard=I/N] [--dry_run] "
         "-- image_classification|transformer --flag=v1,v2 ...")


def define_flags(fv: flags.FlagValues) -> None:
  """The sweep's own flags (those before `--`)."""
  report.define_flags(fv)
  flags.DEFINE_enum("aggregate", "product", ["product", "zip"], "How the axes combine: every "
                    "combination (product) or the i-th value of each (zip).", flag_values=fv)
  flags.DEFINE_string("shard", None, "I/N: run only the runs whose index is I mod N (0 <= I < N), "
                      "e.g. one task of a Slurm job array.", flag_values=fv)
  flags.DEFINE_bool("dry_run", False, "Print one command per run (of this shard) and run nothing.",
                    flag_values=fv)


def flag_values() -> flags.FlagValues:
  """The sweep's own flags (those before `--`), on a FlagValues of their own."""
  fv = flags.FlagValues()
  define_flags(fv)
  return fv


def misplaced_flags(fv: flags.FlagValues, run_part: list[str]) -> list[str]:
  """One line per sweep flag given after `--` that the entry point does not have."""
  try:
    entry_flags = commands.load_entry(run_part[0]).FLAGS
  except grid.GridError:
    return []                                  # the unknown entry point is reported later
  names = [grid.flag_name(a) for a in run_part[1:]]
  return [f"--{n} is a flag of the sweep: put it before `--`" for n in names
          if n in fv and n not in entry_flags]


def main(argv: list[str]) -> int:
  """Parses `argv` (without the program name) and runs the sweep; returns the exit code."""
  if "--" in argv:
    cut = argv.index("--")
    own, run_part = argv[:cut], argv[cut + 1:]
  else:                                        # forgiving: the entry point's name also splits
    cut = next((i for i, a in enumerate(argv) if a in commands.ENTRY_POINTS), len(argv))
    own, run_part = argv[:cut], argv[cut:]
  fv = flag_values()
  return cli.command(study.PROG, USAGE, fv, own, lambda rest: sweep(fv, rest, run_part))


def sweep(fv: flags.FlagValues, rest: list[str], run_part: list[str]) -> int:
  """Runs the sweep of the parsed sweep flags `fv` over the entry point in `run_part`."""
  if not fv.out:
    return cli.fail(study.PROG, ["--out=DIR is required"])
  if rest:
    return cli.fail(study.PROG, [f"unexpected arguments {rest}; the entry point and its flags "
                                 "go after `--`"])
  if not run_part or run_part[0].startswith("-"):
    return cli.fail(study.PROG, [f"name the entry point after `--`: {USAGE}"])
  misplaced = misplaced_flags(fv, run_part)
  if misplaced:
    return cli.fail(study.PROG, misplaced)
  settings = study.Settings(out=fv.out, entry=run_part[0], args=tuple(run_part[1:]),
                            aggregate=fv.aggregate, shard=fv.shard, dry_run=fv.dry_run,
                            options=report.options_of(fv))
  try:
    return study.run(settings)
  except study.SweepError as e:
    return cli.fail(study.PROG, e.lines)
  except KeyboardInterrupt:                   # Ctrl-C before or between runs: nothing to save
    return cli.fail(study.PROG, ["interrupted"], code=130)

if __name__ == "__main__":
  sys.exit(main(sys.argv[1:]))
