"""`python -m sam_edge.landscape RUN_OR_PARAMS --out=DIR`: the training loss around a run's final
parameters θ, along two directions (or one), as landscape.pdf and landscape.npz in DIR.

RUN_OR_PARAMS is a run folder holding a `--params_output` file, or the file itself. The
directions (`sam_edge.landscapes.directions`):
  --directions=random    filter-normalised Gaussian directions (Li et al. 2018), from --seed;
  --directions=hessian   the top Hessian eigenvectors of the training loss at θ (unit norm);
  --directions=runs --runs=A[,B]   the line to run A (1-D) or the plane through θ, A and B (2-D)
                         (or --runs=A --runs=B: folder names with commas, given one by one).
The loss is the evaluation-mode training loss (BatchNorm with the run's stored statistics) on
the run's first --examples training examples (`sam_edge.landscapes.draw`). See README,
"Landscapes".

Bad input (a missing path, an unknown --directions, --dims not 1 or 2, --grid < 2, a bad
--range, --runs missing or of the wrong count, an unwritable --out, ...) is one line and exit
code 2 before anything is loaded; neither the import nor --help loads jax.
"""

import math
import os
import sys

from absl import flags

from sam_edge import records
from sam_edge.cli import compilation_cache
from sam_edge.cli import main as cli

PROG = "landscape"
USAGE = ("python -m sam_edge.landscape RUN_OR_PARAMS --out=DIR [--directions=random|hessian|runs] "
         "[--runs=A,B] [--dims=2] [--grid=25] [--range=-1,1] [--examples=0] [--seed=0]")
KINDS = ("random", "hessian", "runs")
DEFAULT_RANGES = {"random": (-1.0, 1.0), "hessian": (-1.0, 1.0), "runs": (-0.5, 1.5)}


def define_flags(fv: flags.FlagValues) -> None:
  """The command's flags."""
  on = {"flag_values": fv}
  flags.DEFINE_string("out", None, "Folder for landscape.pdf and landscape.npz (created).", **on)
  flags.DEFINE_string("directions", "random", "random (filter-normalised), hessian (top "
                      "eigenvectors) or runs (the plane through θ and --runs).", **on)
  flags.DEFINE_multi_string("runs", [], "With --directions=runs: one other run (--dims=1) or "
                            "two (--dims=2), run folders or params files: --runs=A,B or --runs=A "
                            "--runs=B (a value that is an existing path is one run, so sweep "
                            "folders with commas in their names work given one by one).", **on)
  flags.DEFINE_integer("dims", 2, "1: a cut along the first direction; 2: a contour.", **on)
  flags.DEFINE_integer("grid", 25, "Points per axis (at least 2).", **on)
  flags.DEFINE_string("range", None, "lo,hi: the coefficients of the directions on every axis "
                      "(default -1,1; with --directions=runs -0.5,1.5).", **on)
  flags.DEFINE_integer("seed", 0, "PRNG seed of the random directions and the Lanczos start.",
                       **on)
  flags.DEFINE_integer("examples", 0, "The loss over the run's first N training examples "
                       "(0: all of them).", **on)
  flags.DEFINE_integer("chunk", 0, "Grid points evaluated at once (vmapped) on the device; 0: "
                       f"{draw_chunks()}.", **on)
  flags.DEFINE_integer("lanczos_steps", 50, "At most this many Hessian-vector products for "
                       "--directions=hessian.", **on)
  flags.DEFINE_float("lanczos_tol", 1e-4, "Lanczos stops when every residual is at most this "
                     "times the largest eigenvalue.", **on)
  flags.DEFINE_string("manual_dir", None, "The dataset's original files, replacing the run's "
                      "--manual_dir.", **on)
  flags.DEFINE_string("tfds_data_dir", None, "Where TFDS keeps prepared datasets, replacing the "
                      "run's --tfds_data_dir.", **on)


def draw_chunks() -> str:
  """The default --chunk, in words (`landscapes.grid.default_chunk`; no jax imported here)."""
  return "1 on a CPU (vmapped matrix products are slower there), 16 on an accelerator"


def parse_range(text: str | None, kind: str) -> tuple[tuple[float, float] | None, str | None]:
  """(lo, hi) of --range (the kind's default when not given), or (None, why not)."""
  if text is None:
    return DEFAULT_RANGES.get(kind, (-1.0, 1.0)), None
  parts = text.split(",")
  try:
    lo, hi = (float(x) for x in parts)
  except ValueError:
    return None, f"--range={text}: give two numbers lo,hi"
  if not (math.isfinite(lo) and math.isfinite(hi) and lo < hi):
    return None, f"--range={text}: need finite lo < hi"
  return (lo, hi), None


def run_paths(values: list[str]) -> list[str]:
  """The --runs values as paths: a value naming an existing path is one run, any other is split
  at its commas."""
  return [p for v in values for p in ([v] if os.path.exists(v) else v.split(",")) if p]


def problems(fv: flags.FlagValues, paths: list[str]) -> list[str]:
  """Every problem with the arguments, before anything is loaded (one line each)."""
  return _path_problems(fv, paths) + _grid_problems(fv) + _runs_problems(fv)


def _path_problems(fv: flags.FlagValues, paths: list[str]) -> list[str]:
  """The run to draw and the output folder."""
  found = []
  if len(paths) != 1:
    found.append(f"give exactly one run folder or params file: {USAGE}")
  elif not os.path.exists(paths[0]):
    found.append(f"{paths[0]}: no such file or run folder")
  if not fv.out:
    found.append("--out=DIR is required")
  elif (problem := records.folder_problem(fv.out)):
    found.append(f"--out={fv.out}: {problem}")
  return found


def _grid_problems(fv: flags.FlagValues) -> list[str]:
  """The directions, the grid and the solver's options."""
  checks = [
      (fv.directions in KINDS, f"--directions={fv.directions}: choose one of {', '.join(KINDS)}"),
      (fv.dims in (1, 2), f"--dims={fv.dims}: must be 1 (a cut) or 2 (a contour)"),
      (fv.grid >= 2, f"--grid={fv.grid}: need at least 2 points per axis"),
      (fv.examples >= 0, f"--examples={fv.examples}: must be >= 0 (0: every training example)"),
      (fv.chunk >= 0, f"--chunk={fv.chunk}: must be >= 0 (0: by the device)"),
      (fv.lanczos_steps >= 2,
       f"--lanczos_steps={fv.lanczos_steps}: must be >= 2 (two eigenvectors)"),
      (math.isfinite(fv.lanczos_tol) and fv.lanczos_tol > 0,
       f"--lanczos_tol={fv.lanczos_tol}: must be positive"),
  ]
  found = [line for ok, line in checks[:3] if not ok]
  _, why = parse_range(fv.range, fv.directions)
  return found + ([why] if why else []) + [line for ok, line in checks[3:] if not ok]


def _runs_problems(fv: flags.FlagValues) -> list[str]:
  """--runs, which only --directions=runs reads."""
  if fv.directions != "runs":
    return [f"--runs is for --directions=runs, not --directions={fv.directions}"] if fv.runs \
        else []
  runs = run_paths(fv.runs)
  found = []
  if fv.dims in (1, 2) and len(runs) != fv.dims:
    found.append(f"--directions=runs --dims={fv.dims} needs --runs with {fv.dims} other "
                 f"run{'s' if fv.dims == 2 else ''} (got {len(runs)})")
  return found + [f"--runs: {r}: no such file or run folder" for r in runs if not os.path.exists(r)]


def landscape(fv: flags.FlagValues, paths: list[str]) -> int:
  """Checks the arguments, then draws the landscape (`landscapes.draw`)."""
  found = problems(fv, paths)
  if found:
    return cli.fail(PROG, found)
  compilation_cache.install()
  from sam_edge.landscapes import draw  # pylint: disable=import-outside-toplevel
  settings = draw.Settings(
      source=paths[0], out=fv.out, kind=fv.directions, runs=tuple(run_paths(fv.runs)),
      dims=fv.dims, grid=fv.grid, range=parse_range(fv.range, fv.directions)[0], seed=fv.seed,
      examples=fv.examples, chunk=fv.chunk, lanczos_steps=fv.lanczos_steps,
      lanczos_tol=fv.lanczos_tol, manual_dir=fv.manual_dir, tfds_data_dir=fv.tfds_data_dir)
  result = draw.draw(settings, log=lambda line: print(f"{PROG}: {line}", flush=True))
  print(f"{PROG}: loss at θ {result['centre']:.6g}, min {result['min']:.6g}, max "
        f"{result['max']:.6g}; directions {result['direction_seconds']:.1f} s, grid "
        f"{result['grid_seconds']:.1f} s; wrote {fv.out}/landscape.pdf and landscape.npz")
  return 0


def flag_values() -> flags.FlagValues:
  """Every flag of the command, on a FlagValues of its own."""
  fv = flags.FlagValues()
  define_flags(fv)
  return fv


def main(argv: list[str]) -> int:
  """Parses `argv` (without the program name) and draws the landscape."""
  fv = flag_values()
  return cli.command(PROG, USAGE, fv, argv, lambda paths: landscape(fv, paths))


if __name__ == "__main__":
  sys.exit(main(sys.argv[1:]))
