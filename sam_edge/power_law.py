"""`python -m sam_edge.power_law --out=DIR`: mini-batch SGD with heavy-ball momentum in the
linearised regime, in four regimes (network, linearized, averaged, spectral_diagonal), with its
stability region and power-law fits. See README, "Mini-batch SGD in the linearised regime".

    python -m sam_edge.power_law --out=DIR [--data=synthetic|mnist|cifar10|csv] \\
        [--csv_path=FILE --target_column=NAME [--feature_columns=a,b,...]] [--num_examples=N] \\
        [--subset=stratified|random|first] [--regimes=...] [--batch_sizes=...] \\
        [--step_sizes=...] [--momenta=...] [--aggregate=product|zip] [--tau=...]

Bad flags are one line and exit code 2 before anything is computed; jax is imported only once
they pass.
"""

import sys

from absl import flags

from sam_edge.cli import compilation_cache
from sam_edge.cli import main as cli
from sam_edge.linear_sgd import settings

PROG = "power_law"
USAGE = ("python -m sam_edge.power_law --out=DIR [--data=synthetic|mnist|cifar10|csv] "
         "[--csv_path=FILE --target_column=NAME [--feature_columns=a,b,...]] [--num_examples=N] "
         "[--subset=stratified|random|first] "
         "[--regimes=network,linearized,averaged,spectral_diagonal] [--batch_sizes=b,...] "
         "[--step_sizes=a,...] [--momenta=m,...] [--aggregate=product|zip] [--tau=t,...] "
         "[--steps=T] [--seeds=S]")


def flag_values() -> flags.FlagValues:
  """Every flag of the command, on a FlagValues of its own."""
  fv = flags.FlagValues()
  settings.define_flags(fv)
  return fv


def main(argv: list[str]) -> int:
  """Parses `argv` (without the program name) and runs the study; returns the exit code."""
  fv = flag_values()
  return cli.command(PROG, USAGE, fv, argv, lambda rest: study(fv, rest))


def study(fv: flags.FlagValues, rest: list[str]) -> int:
  """Checks the parsed flags `fv`, then runs the study."""
  if rest:
    return cli.fail(PROG, [f"unexpected arguments {rest}"])
  s, problems = settings.settings_of(fv)
  if problems:
    return cli.fail(PROG, problems)
  compilation_cache.install()
  from sam_edge.linear_sgd import study as linear_study  # pylint: disable=import-outside-toplevel
  return linear_study.run(s, log=lambda line: print(f"{PROG}: {line}", flush=True))


if __name__ == "__main__":
  sys.exit(main(sys.argv[1:]))
