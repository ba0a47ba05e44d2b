"""The seconds of one training step of `python -m image_classification` with the given flags.

The problem is built by the entry point's task from the flags and stepped by the run's own jitted
update (`run.components.components`, the function the training loop calls, with its batch
order, SAM variant and state). The first `--cycle` steps compile (LookSAM compiles its SAM step
at step 0 and its reuse step at step 1) and are left out; the next `--repeats`
steps are timed one by one, each waited for on the device. It prints one JSON line

    {"cost": s, "median": s, "seconds": [s, ...]}

with cost = the mean over the phases p < c of the fastest step t ≡ p (mod c), c = `--cycle`:
for c = 1 the fastest step, the figure to compare between configurations on a shared machine
(other work can only slow a step down, so the minimum is the least disturbed measurement); a
method whose steps differ in a cycle (LookSAM: its SAM gradient every k steps) gives c = k.

    python benchmarks/step_cost.py [--repeats 5] [--cycle 1] -- [image_classification flags...]
"""

import argparse
import json
import os
import statistics
import sys
import time
from typing import Any, NamedTuple

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

import jax  # noqa: E402

import image_classification  # noqa: E402
from sam_edge.cli import config as cli_config  # noqa: E402
from sam_edge.cli import main as cli  # noqa: E402
from sam_edge.curvature import measure  # noqa: E402
from sam_edge.optim import update  # noqa: E402
from sam_edge.run import components, devices  # noqa: E402
from sam_edge.run import problem as problem_lib  # noqa: E402


class Built(NamedTuple):
  """A run's pieces, as the entry point would make them, before its first step."""
  settings: Any
  problem: Any
  place: Any
  parts: Any
  state: Any
  measure_state: Any


def build(module: Any, argv: list[str], name: str) -> Built:
  """The problem, compiled pieces (`run.components`) and first states of `module`'s run (an
  entry point: image_classification or transformer) with the flags `argv`."""
  cli.parse_flags(module.FLAGS, [module.PROG, *argv])
  f = module.FLAGS
  found = module.problems(f)
  if found:
    sys.exit(f"{name}: {found[0]}")
  run = cli_config.of_flags(module.TASK, f)
  settings = run.run
  run_keys = problem_lib.keys(f.seed)
  problem = module.TASK.build(run.problem, run_keys["init"])
  place = devices.placement(1)
  parts = components.components(problem, settings, run_keys, place)
  state = place.replicate(update.init_state(problem.params, settings.method.optimizer.make(),
                                            problem.model_state, settings.method.sam))
  measure_state = place.replicate(measure.init_state(settings.measure, problem.params))
  return Built(settings, problem, place, parts, state, measure_state)


def step_seconds(argv: list[str], repeats: int, warm: int = 1) -> list[float]:
  """The seconds of training steps warm .. warm + repeats − 1 of the run `argv` describes (the
  first `warm` steps compile)."""
  b = build(image_classification, argv, "step_cost")
  state, measure_state, seconds = b.state, b.measure_state, []
  for step in range(repeats + warm):
    start = time.perf_counter()
    state, measure_state, out = b.parts.update(state, measure_state, b.parts.train_arrays,
                                               b.parts.data_key, step)
    jax.block_until_ready((state, out))
    if step >= warm:
      seconds.append(time.perf_counter() - start)
  return seconds


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--repeats", type=int, default=5)
  parser.add_argument("--cycle", type=int, default=1)
  parser.add_argument("flags", nargs="*", help="image_classification flags (after --)")
  args = parser.parse_args()
  if args.cycle < 1 or args.repeats < args.cycle:
    parser.error("--cycle must be at least 1 and --repeats at least --cycle")
  seconds = step_seconds(args.flags, args.repeats, warm=args.cycle)
  phases = [[s for t, s in enumerate(seconds, start=args.cycle) if t % args.cycle == p]
            for p in range(args.cycle)]
  print(json.dumps({"cost": statistics.mean(min(p) for p in phases),
                    "median": statistics.median(seconds), "seconds": seconds}))


if __name__ == "__main__":
  main()
