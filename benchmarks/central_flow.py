"""How closely the central flow follows gradient descent at the edge of stability.

Full-batch GD with the reference's squared-error loss on the first `--examples` MNIST training
images (from ../shared/data/mnist), a tanh MLP (`--depth` dense layers of width `--width`), step
size `--step_size`, for `--steps` steps; the central flow (`--critical_eigenvalues`, `--substeps`)
and gradient flow from the same initialisation (`python -m sam_edge.central_flow`, whose outputs
go to `--out`). The figures (`sam_edge.flows.summary`), over GD's settled edge-of-stability phase
(from half an averaging window after the step from which GD's λ1 stays within 5% of 2/η, to the
end; the command also prints them from the onset, where λ1 first reaches 2/η):

* loss_relative_error: max |predicted time-averaged loss − GD's running-average loss| / the latter,
  the running average over one cycle of GD's loss at the edge, measured (`--average_window 0`,
  the default; `summary.cycle_period`), or over `--average_window` steps;
* sharpness_relative_error: max |S_flow − 2/η| / (2/η) once the flow is at its edge;
* distance_ratio: max ‖w_GD − w_flow‖ / ‖w_GD − w_0‖ (the distance GD has travelled);
* gradient_flow_distance_ratio: the same for gradient flow;
* seconds_per_step: wall-clock seconds per GD step of GD and both flows together (compilation
  excluded).

    python benchmarks/central_flow.py [--json PATH] [--steps 1000] [--critical_eigenvalues 3] ...
"""

import argparse
import json
import os
import sys

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

from sam_edge import central_flow, records  # noqa: E402
from sam_edge.flows import outputs  # noqa: E402

SHARED = os.path.join(REPO, "..", "shared", "data")
KEYS = ("loss_relative_error", "sharpness_relative_error", "distance_ratio",
        "gradient_flow_distance_ratio", "seconds_per_step")


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--json", help="also write the figures to this JSON file")
  parser.add_argument("--out", default="/tmp/central_flow_benchmark")
  parser.add_argument("--examples", type=int, default=1000)
  parser.add_argument("--depth", type=int, default=4)
  parser.add_argument("--width", type=int, default=64)
  parser.add_argument("--step_size", type=float, default=1.0)
  parser.add_argument("--steps", type=int, default=1000)
  parser.add_argument("--substeps", type=int, default=4)
  parser.add_argument("--critical_eigenvalues", type=int, default=3)
  parser.add_argument("--lanczos_tol", type=float, default=1e-3)
  parser.add_argument("--average_window", type=int, default=0)
  args = parser.parse_args()
  argv = [f"--manual_dir={SHARED}/mnist", "--activation=tanh", f"--mlp_depth={args.depth}",
          f"--mlp_width={args.width}", f"--batch_size={args.examples}",
          "--mini_training_set_num_batches=1", "--mini_test_set_num_batches=1",
          f"--step_size={args.step_size}", f"--max_steps={args.steps}",
          f"--substeps={args.substeps}", f"--critical_eigenvalues={args.critical_eigenvalues}",
          f"--lanczos_tol={args.lanczos_tol}", f"--average_window={args.average_window}",
          f"--out={args.out}", "--compilation_cache_dir="]        # compiled here, as before
  code = central_flow.main(argv)
  if code:
    sys.exit(code)
  final = records.read_raw(os.path.join(args.out, outputs.PICKLE))["final"]
  figures = {key: final[key] for key in KEYS}
  print(f"{'figure':<30} value", flush=True)
  for key in KEYS:
    value = figures[key]
    print(f"{key:<30} {'n/a' if value is None else f'{value:.4f}'}", flush=True)
  if args.json:
    with open(args.json, "w") as f:
      json.dump({**figures, "eos_start": final["eos_start"],
                 "settled_start": final["settled_start"],
                 "flow_edge_start": final["flow_edge_start"],
                 "window": final["window"], "cycle_period": final["cycle_period"],
                 "loss_relative_error_mean": final["loss_relative_error_mean"],
                 "loss_phase_mean_relative_error": final["loss_phase_mean_relative_error"],
                 "settings": vars(args)}, f, indent=2)


if __name__ == "__main__":
  main()
