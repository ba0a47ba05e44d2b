"""A laptop-scale check of the SAM papers' label-noise claim: SGD against SAM, both with heavy-ball
momentum, on Fashion-MNIST (or MNIST) with 40% of the training labels replaced by other classes,
over 5 seeds; SAM's ρ chosen from a small grid by validation error, as the SAM paper chooses it.

Every run is one `python -m image_classification` (a process of its own) with the same recipe:
an MLP (--mlp_depth, --mlp_width), cross-entropy, batch 128, momentum 0.9, a constant step size,
the first --train_batches batches of 128 training examples (a subset small enough that SGD has
the epochs to memorise its noisy labels within the budget), --label_noise=0.4 (symmetric: each
replaced label uniform over the other classes, fixed by the seed), --validation_fraction=0.1 (a
stratified split of that subset taken before the noise, so its labels are clean, as the test
labels are), --num_epochs epochs, no curvature measurements; the test set is whole. Seeds 0..4 give
the same initialisation, noisy labels, split and batches to both methods.

  1. SAM at every ρ of --rhos for every seed; ρ* = the ρ with the least mean validation error.
  2. SGD for every seed.
  3. Reported: the clean test accuracy (1 − test_error of the final parameters) of SGD and of SAM
     at ρ*, each as mean ± the half-width of its 95% t-interval over the seeds
     (`studies.intervals`), and the paired difference SAM − SGD (per seed) with its interval.

Selecting ρ on the validation split and reporting the test accuracy of the same runs is the SAM
paper's protocol; nothing here looks at test accuracy to choose.

    python benchmarks/label_noise.py [--json PATH] [--dataset fashion_mnist] [--seeds 0,1,2,3,4]
                                     [--rhos 0.05,0.1,0.2,0.5] [--num_epochs 40] [--noise 0.4]
                                     [--train_batches 78]

On 2 CPU cores the 25 runs of the defaults take about 30 minutes.
JSON: {"sgd": {"mean", "ci95", "accuracies"}, "sam": {...}, "rho": ρ*, "difference": {"mean",
"ci95"}, "rho_grid": {ρ: mean validation error}, "settings": {...}}.
"""

import argparse
import json
import os
import pickle
import subprocess
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

from sam_edge.studies import intervals  # noqa: E402


def recipe(args: argparse.Namespace) -> list[str]:
  """The flags every run shares (module doc)."""
  return [f"--dataset={args.dataset}", f"--manual_dir={args.manual_dir}",
          f"--tfds_data_dir={args.tfds_data_dir}", "--nn_architecture=MLP",
          f"--mlp_depth={args.mlp_depth}", f"--mlp_width={args.mlp_width}",
          "--loss=cross_entropy", "--batch_size=128",
          f"--mini_training_set_num_batches={args.train_batches}", "--optimizer=momentum",
          "--momentum=0.9",
          f"--step_size={args.step_size}", f"--label_noise={args.noise}",
          "--validation_fraction=0.1", f"--num_epochs={args.num_epochs}",
          "--hessian_check_gap=0", "--time_limit_in_hours=10", "--eigs_curve_output=",
          "--eigs_se_only_output=", "--alignment_curve_output=", "--loss_curve_output="]


def run(args: argparse.Namespace, seed: int, rho: float, folder: str) -> dict:
  """One run's final dict (its test and validation errors); exits on a failed run."""
  raw = os.path.join(folder, f"seed{seed}_rho{rho:g}.pkl")
  argv = [sys.executable, "-m", "image_classification", *recipe(args), f"--seed={seed}",
          f"--rho={rho}", f"--raw_data_output={raw}"]
  start = time.perf_counter()
  proc = subprocess.run(argv, cwd=REPO, capture_output=True, text=True, check=False)
  if proc.returncode != 0:
    sys.exit(f"run failed (exit {proc.returncode}): {' '.join(argv)}\n{proc.stderr[-2000:]}")
  with open(raw, "rb") as f:
    final = pickle.load(f)["final"]
  print(f"  seed {seed} ρ {rho:g}: test accuracy {1 - final['test_error']:.4f}, validation error "
        f"{final['validation_error']:.4f} ({time.perf_counter() - start:.0f} s)", flush=True)
  return final


def summary(values: list[float]) -> dict:
  s = intervals.stats(values)
  return {"mean": s.mean, "ci95": s.ci95}


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n", maxsplit=1)[0])
  parser.add_argument("--json")
  parser.add_argument("--dataset", default="fashion_mnist", choices=["fashion_mnist", "mnist"])
  parser.add_argument("--manual_dir", default=None, help="default: ../shared/data/<dataset>")
  parser.add_argument("--tfds_data_dir", default=os.path.join(tempfile.gettempdir(),
                                                              "sam_edge_label_noise_tfds"))
  parser.add_argument("--seeds", default="0,1,2,3,4")
  parser.add_argument("--rhos", default="0.05,0.1,0.2,0.5")
  parser.add_argument("--num_epochs", type=int, default=40)
  parser.add_argument("--train_batches", type=int, default=78)
  parser.add_argument("--noise", type=float, default=0.4)
  parser.add_argument("--step_size", type=float, default=0.02)
  parser.add_argument("--mlp_depth", type=int, default=3)
  parser.add_argument("--mlp_width", type=int, default=512)
  args = parser.parse_args()
  args.manual_dir = args.manual_dir or os.path.join(os.path.dirname(REPO), "shared", "data",
                                                    args.dataset)
  seeds = [int(s) for s in args.seeds.split(",")]
  rhos = [float(r) for r in args.rhos.split(",")]
  with tempfile.TemporaryDirectory() as folder:
    print(f"SAM, ρ in {rhos}, seeds {seeds}:", flush=True)
    sam = {rho: [run(args, seed, rho, folder) for seed in seeds] for rho in rhos}
    print(f"SGD, seeds {seeds}:", flush=True)
    sgd = [run(args, seed, 0.0, folder) for seed in seeds]
  grid = {rho: intervals.stats([f["validation_error"] for f in finals]).mean
          for rho, finals in sam.items()}
  best = min(grid, key=lambda rho: (grid[rho], rho))
  accuracy = lambda finals: [1 - f["test_error"] for f in finals]
  doc = {"sgd": {**summary(accuracy(sgd)), "accuracies": accuracy(sgd)},
         "sam": {**summary(accuracy(sam[best])), "accuracies": accuracy(sam[best])},
         "rho": best,
         "difference": summary([a - b for a, b in zip(accuracy(sam[best]), accuracy(sgd))]),
         "rho_grid": {f"{rho:g}": err for rho, err in grid.items()},
         "settings": {k: v for k, v in vars(args).items() if k != "json"}}
  print_table(doc, grid)
  if args.json:
    with open(args.json, "w", encoding="utf-8") as f:
      json.dump(doc, f, indent=2)


def print_table(doc: dict, grid: dict) -> None:
  print("\nρ grid (mean validation error over seeds): "
        + ", ".join(f"ρ={rho:g}: {err:.4f}" for rho, err in grid.items()))
  print("\n| method | ρ | clean test accuracy (mean ± 95% CI) | per seed |")
  print("|---|---|---|---|")
  for name, rho in (("SGD", 0.0), ("SAM", doc["rho"])):
    row = doc[name.lower()]
    seeds = ", ".join(f"{a:.4f}" for a in row["accuracies"])
    print(f"| {name} | {rho:g} | {row['mean']:.4f} {_interval(row['ci95'])} | {seeds} |")
  d = doc["difference"]
  print(f"| SAM − SGD (paired) | | {d['mean']:+.4f} {_interval(d['ci95'])} | |")


def _interval(half_width: float | None) -> str:
  """`± half_width`, or a note where one seed gives no interval (`intervals.stats`: None)."""
  return "(one seed: no interval)" if half_width is None else f"± {half_width:.4f}"


if __name__ == "__main__":
  main()
