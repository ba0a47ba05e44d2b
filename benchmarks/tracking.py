"""What `--track_every_step` costs, and how close its λ1 is to a cold Lanczos.

The default MNIST MLP (depth 4, width 1000, the reference's squared-error loss and step size) at
full batch on the first `--examples` training images, under GD (ρ = 0) and SAM (`--rho`). Each
problem is built by the entry point's task from the flags and driven by the run's own pieces
(`run.components.components`), with and without `--track_every_step --track_hvps=H`:

* cost_ratio: the seconds of a tracked training step over an untracked one, each the fastest of
  its timed steps (steps timed alone, alternately, after compilation; on a shared machine the
  fastest is the one least slowed by other processes); the JSON also holds the ratio of the
  medians (`median_cost_ratio`);
* hvps_per_step: the HVPs the tracker spends per step (the step's own gradient is the primal pass
  of their linearization, so it is not computed twice; with SAM, `gradient_curvature` comes from
  the two gradients the step already computes, at no HVP);
* max_relative_error: over the scheduled measurements after step 0 (every `--every` steps of a
  `--steps`-step run), max |λ1_tracked − λ1_cold| / λ1_cold, where λ1_cold is the measurement's
  Lanczos started from a random vector (tolerance 1e-6) on the same parameters and batch, and the
  tracked value is that step's, whose vector the previous measurement last refreshed.

    python benchmarks/tracking.py [--json PATH] [--examples 5000] [--steps 60] [--every 15]

(`--steps 0` times the steps only.)

JSON: {"gd": {"cost_ratio", "hvps_per_step", "max_relative_error", ...}, "sam": {...}}.
"""

import argparse
import json
import os
import statistics
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402

import image_classification  # noqa: E402
from sam_edge.cli import config as cli_config  # noqa: E402
from sam_edge.cli import main as cli  # noqa: E402
from sam_edge.curvature import measure  # noqa: E402
from sam_edge.optim import update  # noqa: E402
from sam_edge.run import components, devices  # noqa: E402
from sam_edge.run import problem as problem_lib  # noqa: E402

SHARED = os.path.join(REPO, "..", "shared", "data")
TFDS = "/tmp/sam_edge_tfds"


def build(argv: list[str]):
  """(problem, settings, run keys, the run's jitted pieces) from image_classification's flags."""
  m = image_classification
  cli.parse_flags(m.FLAGS, [m.PROG, *argv])
  found = m.problems(m.FLAGS)
  if found:
    sys.exit(f"tracking: {found[0]}")
  run = cli_config.of_flags(m.TASK, m.FLAGS)
  settings = run.run
  run_keys = problem_lib.keys(m.FLAGS.seed)
  problem = m.TASK.build(run.problem, run_keys["init"])
  place = devices.placement(1)
  return problem, settings, run_keys, components.components(problem, settings, run_keys, place)


def fresh(problem, settings):
  """The first training and measurement states, on copies (a training step donates its own)."""
  params = jax.tree.map(jnp.copy, problem.params)
  state = update.init_state(params, settings.method.optimizer.make(), problem.model_state)
  return state, measure.init_state(settings.measure, params)


def step_seconds(parts, state, measure_state, steps: int) -> list[float]:
  """Seconds of each of `steps` training steps (after one that compiles)."""
  state, measure_state, _ = jax.block_until_ready(
      parts.update(state, measure_state, parts.train_arrays, parts.data_key, 0))
  times = []
  for t in range(1, steps + 1):
    start = time.perf_counter()
    state, measure_state, _ = jax.block_until_ready(
        parts.update(state, measure_state, parts.train_arrays, parts.data_key, t))
    times.append(time.perf_counter() - start)
  return times


def method(name: str, base: list[str], args) -> dict:
  hvps = args.track_hvps
  problem, settings, _, plain = build(base)
  _, tracked_settings, _, tracked = build(base + ["--track_every_step", f"--track_hvps={hvps}"])
  plain_times, tracked_times = [], []
  for _ in range(args.rounds):                          # alternately, to share the machine's noise
    plain_times += step_seconds(plain, *fresh(problem, settings), args.timed_steps)
    tracked_times += step_seconds(tracked, *fresh(problem, tracked_settings), args.timed_steps)
  ratio = min(tracked_times) / min(plain_times)

  state, measure_state = fresh(problem, tracked_settings)
  errors, key = [], jax.random.PRNGKey(0)
  for t in range(args.steps):
    if t % args.every == 0:
      batch = tracked.batch(tracked.train_arrays, tracked.data_key, t)
      cold = {**measure_state, "v1": jax.tree.map(lambda v: 0 * v, measure_state["v1"])}
      record, measure_state = tracked.measure(state, batch, cold, jax.random.fold_in(key, t))
      if not bool(record["converged"]):
        sys.exit(f"tracking: {name}: the cold Lanczos at step {t} did not converge")
      cold_lambda = float(record["eigenvalues"][0])
    state, measure_state, out = tracked.update(state, measure_state, tracked.train_arrays,
                                               tracked.data_key, t)
    if t % args.every == 0 and t > 0:
      tracked_lambda = float(out["lambda1_per_step"])
      errors.append(abs(tracked_lambda - cold_lambda) / abs(cold_lambda))
      print(f"  {name} step {t:>4}: tracked λ1 {tracked_lambda:.6g}, cold Lanczos "
            f"{cold_lambda:.6g}, relative difference {errors[-1]:.2e}", flush=True)
  return {"cost_ratio": ratio, "hvps_per_step": hvps,
          "max_relative_error": max(errors) if errors else None,
          "median_cost_ratio": statistics.median(tracked_times) / statistics.median(plain_times),
          "seconds_per_step": min(plain_times), "tracked_seconds_per_step": min(tracked_times),
          "relative_errors": errors}


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--json", help="also write the figures to this JSON file")
  parser.add_argument("--examples", type=int, default=5000)
  parser.add_argument("--steps", type=int, default=60)
  parser.add_argument("--every", type=int, default=15)
  parser.add_argument("--rho", type=float, default=0.05)
  parser.add_argument("--track_hvps", type=int, default=1)
  parser.add_argument("--timed_steps", type=int, default=5)
  parser.add_argument("--rounds", type=int, default=3)
  args = parser.parse_args()
  os.makedirs(TFDS, exist_ok=True)
  base = [f"--batch_size={args.examples}", "--mini_training_set_num_batches=1",
          "--lanczos_tol=1e-6", "--lanczos_max_steps=100", f"--manual_dir={SHARED}/mnist",
          f"--tfds_data_dir={TFDS}"]
  results = {}
  for name, extra in (("gd", ["--rho=0"]), ("sam", [f"--rho={args.rho}"])):
    r = results[name] = method(name, base + extra, args)
    error = "not measured" if r["max_relative_error"] is None else f"{r['max_relative_error']:.2e}"
    print(f"{name:<4} step {r['seconds_per_step']:.3f} s untracked, "
          f"{r['tracked_seconds_per_step']:.3f} s tracked: cost ratio {r['cost_ratio']:.2f} "
          f"(of the medians {r['median_cost_ratio']:.2f}); "
          f"{r['hvps_per_step']} HVPs per step; max relative error {error}",
          flush=True)
  if args.json:
    with open(args.json, "w") as f:
      json.dump(results, f, indent=2)


if __name__ == "__main__":
  main()
