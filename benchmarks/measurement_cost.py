"""What one Hessian measurement costs against its floor, on three problems.

    mlp          the MNIST MLP of the reference's quick experiment (width 100), full batch, ρ = 0.1
    cnn          the default CNN on 2,000 Fashion-MNIST images, full batch, ρ = 0.1
    transformer  the default transformer on its default batch (128 windows), ρ = 0.1

Each problem is built by its entry point's task from the flags and measured by the run's own
pieces (`run.components.components`: the measured batch of step 0, the measurement compiled once,
warm-started from the previous one as in a run). The floor of a measurement that used h HVPs is

    floor = h × (one jitted HVP) + (one jitted gradient) + (one jitted SAM gradient),

each timed alone (the best of three), the work a measurement cannot avoid. It prints, per
problem, the seconds of three warm measurements (after the first, which compiles), the HVPs, the
floor and the median ratio; with --json it writes {problem: {"ratio_to_floor", "seconds",
"floor_seconds", "hvps", "hvp_seconds", "gradient_seconds", "sam_gradient_seconds"}}.

With --against DIR (a checkout of another commit, e.g. cc900f7) it also runs the reference's
quick experiment (`--rho=0.1 --mlp_width=100`, full MNIST batch, here 16 steps measured every 2)
in both trees, alternately, twice, and prints each tree's seconds per HVP of its measurements,
(elapsed − training time) / HVPs, the way that experiment's cost was first compared, and the warm
measurements' own seconds per HVP, seconds and HVPs, and the loop's elapsed seconds and HVPs
(`quick_experiment`; a tree whose loop does not wait for its measurements books their work as
training time, and only the whole loop compares it); the JSON holds them under
"quick_experiment_seconds_per_hvp".

    python benchmarks/measurement_cost.py [--json PATH] [--problems mlp,cnn,transformer]
"""

import argparse
import json
import os
import pickle
import statistics
import subprocess
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import step_cost  # noqa: E402  (benchmarks/, on sys.path as the script's folder)
from jax.flatten_util import ravel_pytree  # noqa: E402

import image_classification  # noqa: E402
import transformer  # noqa: E402
from sam_edge.curvature import hvp, measure  # noqa: E402
from sam_edge.optim import update  # noqa: E402

SHARED = os.path.join(REPO, "..", "shared", "data")
TFDS = "/tmp/sam_edge_tfds"
PROBLEMS = {
    "mlp": (image_classification, ["--mlp_width=100", "--rho=0.1",
                                   f"--manual_dir={SHARED}/mnist"]),
    "cnn": (image_classification, ["--dataset=fashion_mnist", "--nn_architecture=CNN",
                                   "--batch_size=2000", "--mini_training_set_num_batches=1",
                                   "--rho=0.1", f"--manual_dir={SHARED}/fashion_mnist"]),
    "transformer": (transformer, ["--rho=0.1",
                                  f"--training_data={SHARED}/tinyshakespeare.txt"]),
}
QUICK = ["--rho=0.1", "--mlp_width=100", "--max_steps=16", "--measure_every_steps=2",
         "--time_limit_in_hours=1", "--eigs_curve_output=", "--eigs_se_only_output=",
         "--alignment_curve_output=", "--loss_curve_output="]


def best_of(fn, *args, repeats: int = 3) -> float:
  jax.block_until_ready(fn(*args))
  times = []
  for _ in range(repeats):
    start = time.perf_counter()
    jax.block_until_ready(fn(*args))
    times.append(time.perf_counter() - start)
  return min(times)


def problem_cost(name: str) -> dict:
  module, argv = PROBLEMS[name]
  if module is image_classification:
    argv = argv + [f"--tfds_data_dir={TFDS}"]
  b = step_cost.build(module, argv, f"measurement_cost: {name}")
  settings, problem, place, parts, state = b.settings, b.problem, b.place, b.parts, b.state
  measure_state = b.measure_state
  batch = parts.batch(parts.train_arrays, parts.data_key, 0)
  key = jax.random.PRNGKey(0)
  _, measure_state = jax.block_until_ready(parts.measure(state, batch, measure_state, key))
  seconds, hvps = [], []
  for i in range(3):
    start = time.perf_counter()
    record, measure_state = jax.block_until_ready(
        parts.measure(state, batch, measure_state, jax.random.fold_in(key, i)))
    seconds.append(time.perf_counter() - start)
    hvps.append(int(record["hvps"]))
  loss = measure.objective(problem.forward, problem.output_loss, settings.measure,
                           measure.Context(state.model_state, state.opt_state, state.step,
                                           place.replicate(problem.constants))).loss
  params = state.params
  matvec = jax.jit(lambda p, b, v: hvp.operator(loss, p, b)[0](v))
  flat = ravel_pytree(params)[0]
  t_hvp = best_of(matvec, params, batch, jnp.ones_like(flat))
  t_grad = best_of(jax.jit(jax.grad(loss)), params, batch)
  sam = jax.jit(lambda p, b: update.sam_gradients(lambda q, c: (loss(q, c), {}), p, b,
                                                  settings.method.sam).direction)
  t_sam = best_of(sam, params, batch)
  floors = [h * t_hvp + t_grad + t_sam for h in hvps]
  ratio = statistics.median(s / fl for s, fl in zip(seconds, floors))
  print(f"{name:<12} measurement {', '.join(f'{s:.3f}' for s in seconds)} s with "
        f"{', '.join(map(str, hvps))} HVPs; HVP {t_hvp:.3f} s, gradient {t_grad:.3f} s, SAM "
        f"gradient {t_sam:.3f} s; floor {', '.join(f'{x:.3f}' for x in floors)} s; "
        f"ratio to floor {ratio:.3f}", flush=True)
  return {"ratio_to_floor": ratio, "seconds": seconds, "floor_seconds": floors, "hvps": hvps,
          "hvp_seconds": t_hvp, "gradient_seconds": t_grad, "sam_gradient_seconds": t_sam}


def quick_experiment(tree: str, folder: str) -> dict:
  """The quick experiment's measurement cost in the checkout `tree`: `per_hvp`, its seconds per
  HVP as first compared, (elapsed − training time) / HVPs (compilation, evaluation and outputs
  included); `warm_per_hvp`, the warm measurements' own seconds (the records' `seconds`, the
  first measurement, which compiles, left out) over their HVPs; `warm_seconds`, the median warm
  measurement's seconds; and `warm_hvps`, its median HVPs."""
  raw = os.path.join(folder, "raw.pkl")
  cmd = [sys.executable, "-m", "image_classification", *QUICK, f"--raw_data_output={raw}",
         f"--manual_dir={SHARED}/mnist", f"--tfds_data_dir={TFDS}"]
  proc = subprocess.run(cmd, cwd=tree, capture_output=True, text=True)
  if proc.returncode != 0:
    sys.exit(f"measurement_cost: the quick experiment in {tree} failed:\n{proc.stderr[-2000:]}")
  with open(raw, "rb") as f:
    data = pickle.load(f)
  records, warm = data["records"], data["records"][1:]
  return {"per_hvp": ((data["final"]["elapsed"] - data["final"]["train_time"])
                      / sum(r["hvps"] for r in records)),
          "warm_per_hvp": sum(r["seconds"] for r in warm) / sum(r["hvps"] for r in warm),
          "warm_seconds": statistics.median(r["seconds"] for r in warm),
          "warm_hvps": statistics.median(r["hvps"] for r in warm),
          "elapsed": data["final"]["elapsed"], "hvps": sum(r["hvps"] for r in records)}


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--json", help="also write the figures to this JSON file")
  parser.add_argument("--problems", default=",".join(PROBLEMS))
  parser.add_argument("--against", help="another checkout: compare the quick experiment")
  args = parser.parse_args()
  out = {name: problem_cost(name) for name in args.problems.split(",") if name}
  if args.against:
    per_hvp: dict[str, list] = {"this tree": [], args.against: []}
    with tempfile.TemporaryDirectory(prefix="measurement_cost_") as folder:
      for _ in range(2):
        for tree, label in ((REPO, "this tree"), (args.against, args.against)):
          per_hvp[label].append(quick_experiment(tree, folder))
    for label, values in per_hvp.items():
      print(f"quick experiment, {label}: "
            + "; ".join(f"{v['per_hvp']:.3f} s per HVP (warm {v['warm_per_hvp']:.3f}), "
                        f"measurement {v['warm_seconds']:.3f} s at {v['warm_hvps']:g} HVPs, "
                        f"the whole loop {v['elapsed']:.1f} s with {v['hvps']} HVPs"
                        for v in values))
    out["quick_experiment_seconds_per_hvp"] = per_hvp
  if args.json:
    with open(args.json, "w") as f:
      json.dump(out, f, indent=1)


if __name__ == "__main__":
  main()
