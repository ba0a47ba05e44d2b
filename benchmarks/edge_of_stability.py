"""Reproduction check of the edge of stability, end to end through `python -m image_classification`.

Full batch on the first 5,000 MNIST training images (`--mini_training_set_num_batches=1
--batch_size=5000`), a small MLP, the reference's squared-error loss. Each row is one run of the
real entry point as a subprocess, at a step size whose edge lies below the sharpness the network
reaches on its own (progressive sharpening), so that training drives λ1 up to the edge and holds
it there:

  gd        gradient descent                          edge 2/η
  sam       SAM (normalised), ρ > 0                   edge the SAM-edge (falls with ‖g‖)
  momentum  heavy ball, β = 0.9                       edge (2+2β)/η
  adam      Adam, β1 = 0.9 (preconditioned sharpness)  edge 2(1+β1)/((1−β1)η) = 38/η
  sgd_minibatch  plain SGD at batch 64 on the same images (78 batches: the first 4,992), with
            --measure_batch_sharpness (64 fresh batches) and λ1 of the full 4,992-image loss
            (--measure_examples): the batch sharpness settles at 2/η, λ1 below it
            (Andreyev and Beneventano, "Edge of Stochastic Stability", 2024). This row uses
            cross-entropy, η = 0.6, 400 steps: the batch sharpness sharpens progressively (from
            0.06 × 2/η at step 0 to about 2/η by step 200) while λ1 falls as the margins grow.
            Later the network has fitted its 4,992 images (loss ~0.002 by step 800 at η = 0.5)
            and every curvature collapses, batch sharpness included: 400 steps keep the second
            half in the phase the paper describes. Larger η overshoots (η = 0.7: 1.0-1.4 × 2/η;
            η = 1: 1.2-1.9), smaller sharpens later (η = 0.5: median 0.84 over steps 200-380).
            With the squared error this network does not sharpen: its SGD sits at the
            full-batch edge instead (η = 5: λ1/(2/η) 0.85-1.0, batch sharpness 0.6-0.8;
            η = 2.5: 0.66 and 0.36 after a catapult to a flat region; η = 8 diverges).

For the second half of each run's measurements (by step) it prints the median and the 10th–90th
percentile range of λ1/edge, with the edge of each measurement from the record's `edge` key,
plus the steps and the run's seconds. `--json PATH` writes
{"gd": {"median_ratio", "p10", "p90", "steps", "step_size", "rho"}, "sam": {...}, ...}; the
sgd_minibatch row also has "median_batch_sharpness_ratio" and "median_lambda1_ratio" (each over
2/η; its "median_ratio" is λ1's).

    python benchmarks/edge_of_stability.py [--json PATH] [--rows gd,sam] [--out DIR]

It needs MNIST: `--manual_dir` (default ../shared/data/mnist) and a TFDS folder to prepare it
into (`--tfds_data_dir`, default /tmp/sam_edge_tfds). A benchmark, not a test: it takes minutes.
"""

import argparse
import json
import os
import pickle
import subprocess
import sys
import tempfile
import time

import numpy as np

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

COMMON = ["--dataset=mnist", "--nn_architecture=MLP", "--mlp_depth=3", "--mlp_width=100",
          "--batch_size=5000", "--mini_training_set_num_batches=1",
          "--mini_test_set_num_batches=2", "--loss=squared_error", "--time_limit_in_hours=1",
          "--lanczos_max_steps=40", "--seed=0"]

# name: (flags, steps, measure every). This network's sharpness is λ1 ≈ 1.24 at initialisation
# and stays about 1.1-1.2 under small steps; each step size puts its method's edge below that
# (2/η = 0.8, SAM-edge from 1.54 falling below 0.8 as ‖g‖ falls, (2+2β)/η = 1.086, and for Adam
# 38/η = 19,000 against a preconditioned sharpness that grows past 30,000 at small η).
ROWS = {
    "gd": (["--step_size=2.5"], 1000, 20),
    "sam": (["--step_size=1.0", "--rho=0.05"], 1000, 20),
    "momentum": (["--step_size=3.5", "--optimizer=momentum", "--momentum=0.9"], 1000, 20),
    "adam": (["--step_size=0.002", "--optimizer=adam"], 1000, 20),
    "sgd_minibatch": (["--step_size=0.6", "--loss=cross_entropy", "--batch_size=64",
                       "--mini_training_set_num_batches=78",
                       "--measure_examples=4992", "--measure_batch_sharpness",
                       "--batch_sharpness_batches=64"], 400, 20),
}


def flag_value(flags: list[str], name: str, default: float) -> float:
  for f in flags:
    if f.startswith(f"--{name}="):
      return float(f.split("=", 1)[1])
  return default


def run_row(name: str, args, out_dir: str) -> dict:
  flags, steps, every = ROWS[name]
  raw_path = os.path.join(out_dir, f"{name}.pkl")
  outputs = {"raw_data_output": raw_path,
             "eigs_curve_output": os.path.join(out_dir, f"{name}_eigs.pdf"),
             "eigs_se_only_output": os.path.join(out_dir, f"{name}_eigs_se_only.pdf"),
             "alignment_curve_output": os.path.join(out_dir, f"{name}_alignment.pdf"),
             "loss_curve_output": os.path.join(out_dir, f"{name}_loss.pdf")}
  cmd = [sys.executable, "-m", "image_classification", *COMMON, *flags,
         f"--max_steps={args.steps or steps}", f"--measure_every_steps={every}",
         f"--manual_dir={args.manual_dir}", f"--tfds_data_dir={args.tfds_data_dir}",
         *[f"--{k}={v}" for k, v in outputs.items()]]
  start = time.perf_counter()
  proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True)
  seconds = time.perf_counter() - start
  if proc.returncode != 0:
    sys.exit(f"edge_of_stability: {name} failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
  with open(raw_path, "rb") as f:
    raw = pickle.load(f)
  return summarize(name, raw, flags, seconds)


def summarize(name: str, raw: dict, flags: list[str], seconds: float) -> dict:
  """λ1/edge over the second half of the measurements (by step)."""
  records = raw["records"]
  last = raw["final"]["steps"]
  later = [r for r in records if r["step"] >= last / 2 and r.get("edge") is not None]
  ratios = np.array([r["eigenvalues"][0] / r["edge"] for r in later])
  extra = {}
  if later and later[0].get("batch_sharpness") is not None:
    extra = {"median_batch_sharpness_ratio": float(np.median(
                 [r["batch_sharpness"] / r["two_over_eta"] for r in later])),
             "median_lambda1_ratio": float(np.median(
                 [r["eigenvalues"][0] / r["two_over_eta"] for r in later]))}
  return {**extra, "median_ratio": float(np.median(ratios)),
          "p10": float(np.percentile(ratios, 10)),
          "p90": float(np.percentile(ratios, 90)), "steps": int(last),
          "step_size": flag_value(flags, "step_size", 0.01), "rho": flag_value(flags, "rho", 0.0),
          "measurements": len(later), "seconds": seconds,
          "edge_label": later[-1].get("edge_label") if later else None,
          "first_lambda1": records[0]["eigenvalues"][0] if records else None,
          "first_edge": records[0].get("edge") if records else None,
          "unconverged": sum(not r.get("converged", True) for r in records)}


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--json", help="also write the results as JSON here")
  parser.add_argument("--rows", default=",".join(ROWS), help="comma-separated rows to run")
  parser.add_argument("--steps", type=int, default=None, help="override each row's steps")
  parser.add_argument("--manual_dir", default=os.path.join(REPO, "..", "shared", "data", "mnist"))
  parser.add_argument("--tfds_data_dir", default="/tmp/sam_edge_tfds")
  parser.add_argument("--out", default=None, help="keep each run's pickle and PDFs here")
  args = parser.parse_args()
  os.makedirs(args.tfds_data_dir, exist_ok=True)
  out_dir = args.out or tempfile.mkdtemp(prefix="edge_of_stability_")
  os.makedirs(out_dir, exist_ok=True)
  results = {}
  print(f"{'row':<9} {'edge':<26} {'η':>8} {'ρ':>5} {'steps':>6} {'λ1/edge median':>15} "
        f"{'p10':>7} {'p90':>7} {'λ1(0)/edge':>10} {'seconds':>8}")
  for name in args.rows.split(","):
    r = results[name] = run_row(name, args, out_dir)
    start = (r["first_lambda1"] / r["first_edge"]) if r["first_edge"] else float("nan")
    print(f"{name:<9} {str(r['edge_label']):<26} {r['step_size']:>8g} {r['rho']:>5g} "
          f"{r['steps']:>6} {r['median_ratio']:>15.3f} {r['p10']:>7.3f} {r['p90']:>7.3f} "
          f"{start:>10.3f} {r['seconds']:>8.1f}", flush=True)
    if "median_batch_sharpness_ratio" in r:
      print(f"{'':<9} batch sharpness / (2/η): median {r['median_batch_sharpness_ratio']:.3f}; "
            f"λ1 / (2/η): median {r['median_lambda1_ratio']:.3f}", flush=True)
  print(f"(second half of each run's measurements; runs kept in {out_dir})")
  if args.json:
    keys = ("median_ratio", "p10", "p90", "steps", "step_size", "rho")
    with open(args.json, "w") as f:
      json.dump({name: {k: r[k] for k in keys + ("median_batch_sharpness_ratio",
                                                   "median_lambda1_ratio") if k in r}
                 for name, r in results.items()}, f, indent=2)


if __name__ == "__main__":
  main()
