"""SGD with momentum against SAM and each of its variants on a ResNet-20, with 0% and 40% label
noise, on the same seeds and step budget: test accuracy, the last measured λ1 against the edge,
and the cost of a training step relative to SGD's.

Each row is one run of `python -m image_classification` (ResNet-20 with BatchNorm, batch 128,
heavy-ball momentum 0.9, L2 weight decay 5e-4, flip-crop augmentation, cross-entropy, a constant
step size), SAM with ρ = 0.1 in front of the same base optimizer: `sam` is normalized SAM, the
other rows the `--sam` variant of that name with its default flags, and `sam-on` normalized SAM
with `--sam_params=normalization` (ρ is the same for all; for unnormalized SAM it scales g
itself, not a unit vector). Two costs of a step, each over SGD's of the same noise and seed:
`s/step`, the run's training time between the measurements at steps m and 2m, m = (steps − 1)//2,
per step (compilation excluded; LookSAM's is its average over its cycle only when m is a multiple
of --looksam_every, 5); and `step s`, the fastest of --cost_repeats steps of the same
configuration timed one by one in a process of its own (`step_cost.py`; LookSAM: the mean over
its cycle of each phase's fastest). On a machine shared with other work the run's seconds move
with the load; the fastest step moves much less, so `step s` is the cost to read (on a quiet
machine: a load that lasts slows every step). The last measurement
(at the last step, on that step's batch) gives λ1 of the loss without the L2 term; the edge
shown is the base optimizer's (2+2β)/η − wd (the L2 term adds wd to every eigenvalue), the
`edge` of the SGD rows. For SAM on momentum no closed-form edge is known (its records hold
`edge: None`), so its ratio is against the base optimizer's edge and says only how far SAM's
sharpness sits below that of plain momentum.

    python benchmarks/sam_vs_sgd.py [--json PATH] [--dataset fashion_mnist] [--steps 301]
                                    [--seeds 0,1] [--noise 0,0.4] [--methods sgd,sam,gsam,...]
                                    [--cost_repeats 5] [--cost_only]

On 2 CPU cores each SGD run takes about 3 minutes and each SAM run about 4 (at 300 steps).

On this CPU: Fashion-MNIST (`--manual_dir`, default ../shared/data/fashion_mnist). On a GPU
machine: `--dataset=cifar10 --manual_dir=DIR` with `cifar-10-binary.tar.gz` in DIR.
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
os.environ.setdefault("JAX_PLATFORMS", "cpu")        # this process only computes an edge

from sam_edge.optim import edges  # noqa: E402
from sam_edge.optim.optimizers import OptimizerSettings  # noqa: E402
from sam_edge.optim.sam import SAM_VARIANTS, SamSettings  # noqa: E402
from sam_edge.optim.variants.looksam import LOOKSAM_EVERY  # noqa: E402

BETA, WD = 0.9, 5e-4
RECIPE = ["--nn_architecture=ResNet20", "--batch_size=128", "--optimizer=momentum",
          f"--momentum={BETA}", f"--weight_decay={WD}", "--augment=flip_crop",
          "--loss=cross_entropy", "--time_limit_in_hours=4", "--lanczos_max_steps=30",
          "--lanczos_tol=1e-3"]
RHO = 0.1
# method -> the flags of its run: SGD, normalized SAM, every other variant, SAM-ON
METHODS = {"sgd": ["--rho=0"], "sam": [f"--rho={RHO}"],
           **{name: [f"--rho={RHO}", f"--sam={name}"] for name in SAM_VARIANTS
              if name != "normalized"},
           "sam-on": [f"--rho={RHO}", "--sam_params=normalization"]}


def method_flags(args, method: str, noise: float, seed: int) -> list[str]:
  """The image_classification flags of one row (without outputs and the step budget)."""
  return [*RECIPE, f"--dataset={args.dataset}", f"--manual_dir={args.manual_dir}",
          f"--tfds_data_dir={args.tfds_data_dir}", f"--step_size={args.step_size}",
          f"--label_noise={noise}", f"--seed={seed}", *METHODS[method]]


def step_cost(args, method: str, noise: float, seed: int) -> float:
  """The cost of one of the row's training steps, `step_cost.py` in a process of its own: the
  fastest of --cost_repeats steps (LookSAM: the mean over its cycle of each phase's fastest)."""
  cycle = LOOKSAM_EVERY.default if method == "looksam" else 1
  cmd = [sys.executable, os.path.join(REPO, "benchmarks", "step_cost.py"),
         f"--repeats={args.cost_repeats * cycle}", f"--cycle={cycle}", "--",
         *method_flags(args, method, noise, seed)]
  proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True)
  if proc.returncode != 0:
    sys.exit(f"sam_vs_sgd: timing {method} noise {noise} failed:\n{proc.stderr[-3000:]}")
  return json.loads(proc.stdout.strip().splitlines()[-1])["cost"]


def run(args, method: str, noise: float, seed: int, folder: str) -> dict:
  raw_path = os.path.join(folder, f"{method}_{noise}_{seed}.pkl")
  cmd = [sys.executable, "-m", "image_classification", *method_flags(args, method, noise, seed),
         f"--max_steps={args.steps}", f"--measure_every_steps={(args.steps - 1) // 2}",
         f"--raw_data_output={raw_path}",
         "--eigs_curve_output=", "--eigs_se_only_output=", "--alignment_curve_output=",
         "--loss_curve_output=", "--eval_curve_output="]
  start = time.perf_counter()
  proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True)
  if proc.returncode != 0:
    sys.exit(f"sam_vs_sgd: {method} noise {noise} failed:\n{proc.stderr[-3000:]}")
  with open(raw_path, "rb") as f:
    raw = pickle.load(f)
  middle, last = raw["records"][1], raw["records"][-1]
  base = OptimizerSettings("momentum", last["step_size"], hyper={"momentum": BETA},
                           weight_decay=WD)
  base_edge = float(edges.method_edge(base, SamSettings(rho=0.0),
                                      last["step_size"]))          # (2+2β)/η − wd
  return {"method": method, "label_noise": noise, "seed": seed, "steps": raw["final"]["steps"],
          "test_accuracy": 1 - raw["final"]["test_error"], "last_step": last["step"],
          "last_lambda1": last["eigenvalues"][0], "converged": last["converged"],
          "edge": last["edge"], "base_edge": base_edge,
          "lambda1_over_base_edge": last["eigenvalues"][0] / base_edge,
          "step_seconds": (last["time"] - middle["time"]) / (last["step"] - middle["step"]),
          "seconds": time.perf_counter() - start}


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--json")
  parser.add_argument("--dataset", default="fashion_mnist")
  parser.add_argument("--manual_dir", default=os.path.join(REPO, "..", "shared", "data",
                                                           "fashion_mnist"))
  parser.add_argument("--tfds_data_dir", default="/tmp/sam_edge_tfds")
  parser.add_argument("--steps", type=int, default=301)
  parser.add_argument("--step_size", type=float, default=0.05)
  parser.add_argument("--noise", default="0,0.4")
  parser.add_argument("--seeds", default="0,1")
  parser.add_argument("--methods", default=",".join(METHODS))
  parser.add_argument("--cost_repeats", type=int, default=5,
                      help="timed steps per row for the cost (0: the loop's seconds only)")
  parser.add_argument("--cost_only", action="store_true",
                      help="only the cost of a step (step_cost.py), no training runs")
  args = parser.parse_args()
  methods = args.methods.split(",")
  unknown = [m for m in methods if m not in METHODS]
  if unknown or methods[0] != "sgd" or args.steps < 5:
    parser.error(f"--methods: from {', '.join(METHODS)}, sgd first (the cost's reference); "
                 "--steps at least 5")
  if args.cost_repeats < (1 if args.cost_only else 0):
    parser.error("--cost_repeats must be at least 0 (at least 1 with --cost_only)")
  os.makedirs(args.tfds_data_dir, exist_ok=True)
  folder = tempfile.mkdtemp(prefix="sam_vs_sgd_")
  rows = []
  budget = ("the cost of a step only" if args.cost_only else
            f"{args.steps} steps, λ1 at step {2 * ((args.steps - 1) // 2)}")
  print(f"ResNet-20 on {args.dataset}, batch 128, momentum 0.9, η = {args.step_size}, "
        f"SAM ρ = {RHO}; {budget}")
  print(f"{'method':<12} {'noise':>5} {'seed':>4} {'test acc':>9} {'λ1':>9} {'conv':>5} "
        f"{'(2+2β)/η−wd':>11} {'λ1/that':>8} {'edge':>8} {'s/step':>7} {'×SGD':>5} "
        f"{'step s':>7} {'×SGD':>5} {'seconds':>8}")
  nan = float("nan")
  for noise in (float(x) for x in args.noise.split(",")):
    for seed in (int(x) for x in args.seeds.split(",")):
      for method in methods:
        r = ({"method": method, "label_noise": noise, "seed": seed} if args.cost_only
             else run(args, method, noise, seed, folder))
        r["step_cost"] = step_cost(args, method, noise, seed) if args.cost_repeats else nan
        if method == "sgd":
          sgd = r
        r["cost_vs_sgd"] = r["step_cost"] / sgd["step_cost"]
        r["loop_cost_vs_sgd"] = r.get("step_seconds", nan) / sgd.get("step_seconds", nan)
        rows.append(r)
        edge = "None" if r.get("edge", 0) is None else f"{r.get('edge', nan):.4g}"
        print(f"{method:<12} {noise:>5g} {seed:>4} {r.get('test_accuracy', nan):>9.4f} "
              f"{r.get('last_lambda1', nan):>9.4g} {str(r.get('converged', '-')):>5} "
              f"{r.get('base_edge', nan):>11.4g} {r.get('lambda1_over_base_edge', nan):>8.3f} "
              f"{edge:>8} {r.get('step_seconds', nan):>7.3f} {r['loop_cost_vs_sgd']:>5.2f} "
              f"{r['step_cost']:>7.3f} {r['cost_vs_sgd']:>5.2f} {r.get('seconds', nan):>8.0f}",
              flush=True)
  if args.json:
    with open(args.json, "w") as f:
      json.dump({"dataset": args.dataset, "steps": args.steps, "rows": rows}, f, indent=2)


if __name__ == "__main__":
  main()
