"""What checksums cost a checkpoint: seconds per save, and per check at resume, with and without.

For each model, the run's own state is built as `python -m image_classification` builds it (the
task's Problem from the entry point's flags, `optim.update.init_state` with the flags' optimizer,
`curvature.measure.init_state` for the warm starts), with a progress of 2,000 losses and 100
measurement records. Then, alternating, `run.checkpoints.Checkpointer.save` writes steps into two
folders on the same disk, one with checksums (the default) and one with `checksums=False` (the
format before them): each save is timed from the call to its return (the step is complete and
renamed into place; the folder keeps the last 2 steps, so each save also deletes one), and the
median over --saves saves of each is reported, with the median time of the checksums alone
(`run.checksums.make` on the same arrays and meta). "check" is `checkpoints.newest_sound` on
each folder (what --resume does first: every array read back, and hashed where checksums exist),
the median of 3 after one left out.

Models: the default MNIST MLP (`--nn_architecture=MLP`, depth 4, width 1000: 2.8M parameters,
plain SGD) and ResNet-20 (0.27M parameters and BatchNorm statistics, with --optimizer=momentum
for a momentum buffer), both on MNIST (the state does not depend on the image size beyond the
first convolution's 3x3x1x16 weights).

    python benchmarks/checkpoint_cost.py [--json PATH] [--saves 15] [--manual_dir DIR]
"""

import argparse
import contextlib
import json
import os
import pathlib
import statistics
import sys
import tempfile
import time

REPO = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
os.environ.setdefault("JAX_PLATFORMS", "cpu")

import jax  # noqa: E402

import image_classification as entry  # noqa: E402
from sam_edge.cli import config as cli_config  # noqa: E402
from sam_edge.cli import flags as cli_flags  # noqa: E402
from sam_edge.cli import main as cli  # noqa: E402
from sam_edge.curvature import measure  # noqa: E402
from sam_edge.optim import update  # noqa: E402
from sam_edge.run import checkpoints, checksums, loop, meta_json  # noqa: E402
from sam_edge.run.problem import keys  # noqa: E402
from sam_edge.tasks import image_problem  # noqa: E402

MODELS = {"mnist_mlp": ["--nn_architecture=MLP"],
          "resnet20": ["--nn_architecture=ResNet20", "--optimizer=momentum"]}
NO_OUTPUTS = [f"--{o.name}=" for o in cli_flags.output_options()]


def log(message: str) -> None:
  print(message, file=sys.stderr, flush=True)


def run_state(args, model_flags: list[str]):
  """(state, warm starts, config) of a run of `image_classification` with these flags."""
  f = entry.FLAGS
  cli.parse_flags(f, [entry.PROG, "--dataset=mnist", f"--manual_dir={args.manual_dir}",
                      f"--tfds_data_dir={args.tfds_data_dir}", *model_flags, *NO_OUTPUTS])
  found = entry.problems(f)
  if found:
    sys.exit("\n".join(f"checkpoint_cost: {p}" for p in found))
  run = cli_config.of_flags(entry.TASK, f)
  settings = run.run
  with contextlib.redirect_stdout(sys.stderr):
    problem = image_problem.build(run.problem, keys(f.seed)["init"])
  state = update.init_state(problem.params, settings.method.optimizer.make(), problem.model_state)
  return state, measure.init_state(settings.measure, problem.params), cli_config.flag_values(f)


def progress_of_a_run() -> loop.Progress:
  """A progress as a long run carries it: 2,000 losses and 100 measurement records."""
  recs = [{"step": 20 * i, "time": 1.5 * i, "eigenvalues": [40.0 + i / 7], "residuals": [1e-5],
           "converged": True, "hvps": 31, "two_over_eta": 20.0, "sam_edge": 18.3, "edge": 18.3,
           "edge_label": "SAM-edge", "grad_norm": 0.9 / (i + 1), "loss": 1.0 / (i + 1),
           "g_alignment": 0.1, "sg_alignment": 0.2, "step_size": 0.1, "seconds": 0.25}
          for i in range(100)]
  return loop.Progress(records=recs, losses={"step": list(range(2000)),
                                             "loss": [1.0 / (s + 1) for s in range(2000)]},
                       train_time=3000.0, elapsed=3100.0, last_measure_step=1980)


def size_mb(folder: str) -> float:
  return sum(os.path.getsize(os.path.join(root, name)) for root, _, names in os.walk(folder)
             for name in names) / 1e6


def measure_model(args, name: str) -> dict:
  state, warm, config = run_state(args, MODELS[name])
  parameters = sum(x.size for x in jax.tree.leaves(state.params))
  progress = progress_of_a_run()
  seconds = {True: [], False: []}
  with tempfile.TemporaryDirectory(prefix="checkpoint_cost-", dir=args.scratch) as scratch:
    folders = {flag: os.path.join(scratch, "with" if flag else "without") for flag in seconds}
    savers = {flag: checkpoints.Checkpointer(folders[flag], checksums=flag) for flag in seconds}
    for i in range(args.saves + 1):                # the first save of each compiles nothing but
      for flag in (True, False) if i % 2 else (False, True):   # warms orbax up: left out
        step_state = state._replace(step=jax.numpy.asarray(i, jax.numpy.int32))
        t = time.perf_counter()
        savers[flag].save(step_state, warm, progress, config)
        if i:
          seconds[flag].append(time.perf_counter() - t)
    for saver in savers.values():
      saver.close()
    checks = {True: [], False: []}
    for i in range(4):                             # alternating; the first of each left out
      for flag in (True, False) if i % 2 else (False, True):
        t = time.perf_counter()
        sound = checkpoints.newest_sound(folders[flag])
        if i:
          checks[flag].append(time.perf_counter() - t)
        assert sound.step == args.saves and (sound.note is None) == flag, sound
    step_mb = size_mb(os.path.join(folders[True], str(args.saves)))
  arrays = {"state": state, "v_prev": warm}
  body = {"progress": meta_json.progress_to_json(progress),
          "config": meta_json.encode_json(config)}
  hashing = []
  for _ in range(args.saves):
    t = time.perf_counter()
    checksums.make(arrays, body)
    hashing.append(time.perf_counter() - t)
  with_s, without_s = (statistics.median(seconds[flag]) for flag in (True, False))
  check_with, check_without = (statistics.median(checks[flag]) for flag in (True, False))
  row = {"model": name, "parameters": int(parameters), "step_mb": round(step_mb, 2),
         "saves": args.saves, "save_s_with": with_s, "save_s_without": without_s,
         "save_overhead": with_s / without_s - 1, "sha256_s": statistics.median(hashing),
         "check_s_with": check_with, "check_s_without": check_without}
  log(f"{name}: {parameters} parameters, {step_mb:.1f} MB a step; save {without_s:.3f} s "
      f"without, {with_s:.3f} s with checksums ({100 * row['save_overhead']:+.1f}%; the sha256s "
      f"alone {row['sha256_s']:.3f} s); check at resume {check_without:.3f} s without, "
      f"{check_with:.3f} s with")
  return row


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--json", help="also write the rows here")
  parser.add_argument("--saves", type=int, default=15, help="timed saves of each kind")
  parser.add_argument("--models", default=",".join(MODELS))
  parser.add_argument("--manual_dir", default=str(REPO.parent / "shared" / "data" / "mnist"))
  parser.add_argument("--tfds_data_dir", default="/tmp/sam_edge_tfds")
  parser.add_argument("--scratch", default=None, help="where the checkpoint folders go, made "
                      "if missing (default: the system's temporary folder)")
  args = parser.parse_args()
  for folder in (args.tfds_data_dir, args.scratch):
    if folder:
      os.makedirs(folder, exist_ok=True)
  rows = [measure_model(args, name) for name in args.models.split(",")]
  print(f"{'model':<10} {'params':>9} {'MB/step':>8} {'save s (without)':>17} "
        f"{'save s (with)':>14} {'overhead':>9} {'sha256 s':>9} {'check s (without)':>18} "
        f"{'check s (with)':>15}")
  for r in rows:
    print(f"{r['model']:<10} {r['parameters']:>9} {r['step_mb']:>8.1f} "
          f"{r['save_s_without']:>17.3f} {r['save_s_with']:>14.3f} "
          f"{100 * r['save_overhead']:>8.1f}% {r['sha256_s']:>9.3f} "
          f"{r['check_s_without']:>18.3f} {r['check_s_with']:>15.3f}")
  if args.json:
    with open(args.json, "w", encoding="utf-8") as f:
      json.dump(rows, f, indent=1)


if __name__ == "__main__":
  main()
