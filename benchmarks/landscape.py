"""Seconds of a loss landscape on the default MNIST MLP (4 dense layers of width 1000, 2.8M
parameters).

A short run of `python -m image_classification` with its default MLP on the full MNIST training
set (from ../shared/data/mnist; `--steps` SGD steps at batch `--batch_size`) writes its final
parameters (`--params_output`); then `python -m sam_edge.landscape` draws the training loss on
a `--grid` × `--grid` plane (filter-normalised random directions, or `--directions=hessian`)
over the run's first `--examples` training examples. It prints the seconds of the grid (its
compilation included), of the directions and of the whole command (reading the data included).
No figure is asserted.

    python benchmarks/landscape.py [--json PATH] [--grid 25] [--examples 512] [--directions random]
"""

import argparse
import contextlib
import io
import json
import os
import re
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

import image_classification as ic  # noqa: E402
from sam_edge import landscape  # noqa: E402
from sam_edge.cli import main as cli  # noqa: E402

SHARED = os.path.join(REPO, "..", "shared", "data")


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--json", help="also write the figures to this JSON file")
  parser.add_argument("--work", default=None, help="folder for the run and the landscape "
                      "(default: a temporary one)")
  parser.add_argument("--tfds_data_dir", default=None, help="prepared TFDS datasets (default: "
                      "inside --work; MNIST is prepared there once from ../shared/data/mnist)")
  parser.add_argument("--grid", type=int, default=25)
  parser.add_argument("--examples", type=int, default=512)
  parser.add_argument("--directions", default="random")
  parser.add_argument("--steps", type=int, default=20)
  parser.add_argument("--batch_size", type=int, default=128)
  args = parser.parse_args()
  work = args.work or tempfile.mkdtemp(prefix="landscape_benchmark_")
  tfds = args.tfds_data_dir or os.path.join(work, "tfds")
  run = os.path.join(work, "run")
  os.makedirs(run, exist_ok=True)
  cli.parse_flags(ic.FLAGS, [
      "image_classification", f"--manual_dir={SHARED}/mnist", f"--tfds_data_dir={tfds}",
      f"--batch_size={args.batch_size}", f"--max_steps={args.steps}", "--hessian_check_gap=0",
      "--loss_curve_output=", "--eigs_curve_output=", "--eigs_se_only_output=",
      "--alignment_curve_output=", "--eval_curve_output=",
      f"--raw_data_output={run}/raw.pkl", f"--params_output={run}/params.npz",
      "--compilation_cache_dir="])            # no cache: the grid's seconds include compiling
  if ic.main([]):
    sys.exit("the run failed")
  printed = io.StringIO()
  start = time.perf_counter()
  with contextlib.redirect_stdout(printed):
    code = landscape.main([run, f"--out={work}/landscape", f"--directions={args.directions}",
                           f"--grid={args.grid}", "--dims=2", f"--examples={args.examples}",
                           f"--tfds_data_dir={tfds}"])
  total = time.perf_counter() - start
  print(printed.getvalue(), end="")
  if code:
    sys.exit(code)
  found = re.search(r"directions ([\d.]+) s, grid ([\d.]+) s", printed.getvalue())
  figures = {"grid_seconds": float(found.group(2)), "direction_seconds": float(found.group(1)),
             "command_seconds": total, "points": args.grid ** 2}
  for key, value in figures.items():
    print(f"{key:<20} {value:.1f}", flush=True)
  if args.json:
    with open(args.json, "w") as f:
      json.dump({**figures, "settings": vars(args)}, f, indent=2)


if __name__ == "__main__":
  main()
