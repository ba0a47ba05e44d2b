"""The reference's numbers at equal steps: the default transformer at ρ = 0.1 for 80 steps under
both batch orders, seeds 0-2, on tinyshakespeare held out 90/10 as the reference's runs were.

Each run is the real entry point in a subprocess (`python -m transformer --rho=0.1
--max_steps=80 --hessian_check_gap=0 --seed=S --batch_order=O`, the default model, batch and
step size, the test loss the reference's way, `--test_batches=reference`). It prints the test
losses with their mean and the training seconds per step (the pickle's train_time / steps,
waited for on the device), and with --json writes

    {"reference_order": {"test_loss_mean", "test_losses", "seconds_per_step"},
     "shuffled": {...}}

The reference's own runs on the same split: 3.377-3.434 (REFERENCE.md).

    python benchmarks/transformer_parity.py [--json PATH] [--corpus PATH] [--seeds 0,1,2]
                                            [--orders reference_order,shuffled]
"""

import argparse
import json
import os
import pickle
import statistics
import subprocess
import sys
import tempfile

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ORDERS = {"reference_order": "reference", "shuffled": "shuffled"}
OUTPUTS = ("eigs_curve_output", "eigs_se_only_output", "alignment_curve_output",
           "loss_curve_output")


def run(corpus: str, order: str, seed: int, steps: int, folder: str) -> dict:
  """One run's final dict."""
  raw = os.path.join(folder, f"{order}_{seed}.pkl")
  cmd = [sys.executable, "-m", "transformer", f"--training_data={corpus}", "--rho=0.1",
         f"--max_steps={steps}", "--hessian_check_gap=0", f"--seed={seed}",
         f"--batch_order={order}", "--test_batches=reference", "--time_limit_in_hours=10",
         f"--raw_data_output={raw}", *[f"--{name}=" for name in OUTPUTS]]
  proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True)
  if proc.returncode != 0:
    sys.exit(f"transformer_parity: {order} seed {seed} failed:\n{proc.stderr[-3000:]}")
  with open(raw, "rb") as f:
    return pickle.load(f)["final"]


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--json", help="also write the figures to this JSON file")
  parser.add_argument("--corpus", default=os.path.join(REPO, "..", "shared", "data",
                                                       "tinyshakespeare.txt"))
  parser.add_argument("--steps", type=int, default=80)
  parser.add_argument("--seeds", default="0,1,2")
  parser.add_argument("--orders", default=",".join(ORDERS),
                      help="which halves to run (JSON keys): " + ", ".join(ORDERS))
  args = parser.parse_args()
  if not args.orders or any(name not in ORDERS for name in args.orders.split(",")):
    parser.error(f"--orders: from {', '.join(ORDERS)}")
  seeds = [int(s) for s in args.seeds.split(",")]
  out = {}
  with tempfile.TemporaryDirectory(prefix="transformer_parity_") as folder:
    for name in args.orders.split(","):
      order = ORDERS[name]
      finals = [run(args.corpus, order, seed, args.steps, folder) for seed in seeds]
      losses = [f["test_loss"] for f in finals]
      out[name] = {"test_loss_mean": statistics.mean(losses), "test_losses": losses,
                   "seconds_per_step": statistics.mean(f["train_time"] / f["steps"]
                                                       for f in finals)}
      print(f"{name:<16} test losses {', '.join(f'{x:.4f}' for x in losses)}  "
            f"mean {out[name]['test_loss_mean']:.4f}  "
            f"{out[name]['seconds_per_step']:.2f} s/step", flush=True)
  print("the reference's own runs on this split: 3.377-3.434 (REFERENCE.md)")
  if args.json:
    with open(args.json, "w") as f:
      json.dump(out, f, indent=1)


if __name__ == "__main__":
  main()
