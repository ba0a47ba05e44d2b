"""Scaling over devices and the memory of chunked measurements.

1. Steps per second and seconds per measurement of one workload on 1, 2, 4 and 8 devices, each
   a run of `python -m transformer` in a process of its own (the batch sharded over the mesh).
   Without accelerators the devices are *virtual* CPU devices
   (XLA_FLAGS=--xla_force_host_platform_device_count=N sharing the same cores): the figures then
   show that the sharded program runs and what its overhead is, and are NO SPEED FIGURES.
2. The memory of one measurement (XLA's temp buffers of the compiled program, from
   `Compiled.memory_analysis()`) on a fixed set of examples, all at once and in chunks
   (`--measure_chunk`), for the same workload on one device.

    python benchmarks/scaling.py [--json PATH] [--devices 1,2,4,8] [--corpus PATH]
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
sys.path.insert(0, REPO)

MODEL = ["--num_layers=2", "--model_size=64", "--num_heads=4", "--key_size=16",
         "--sequence_length=64", "--batch_size=64", "--lanczos_max_steps=20"]


def run_devices(devices: int, corpus: str, steps: int, folder: str) -> dict:
  raw = os.path.join(folder, f"d{devices}.pkl")
  env = {**os.environ, "XLA_FLAGS": f"--xla_force_host_platform_device_count={devices}"}
  if "cpu" in os.environ.get("JAX_PLATFORMS", "cpu"):
    env["JAX_PLATFORMS"] = "cpu"
  cmd = [sys.executable, "-m", "transformer", f"--training_data={corpus}", *MODEL,
         f"--max_steps={steps}", f"--measure_every_steps={steps // 4}",
         f"--num_devices={devices}", f"--raw_data_output={raw}", "--eigs_curve_output=",
         "--eigs_se_only_output=", "--alignment_curve_output=", "--loss_curve_output="]
  proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True)
  if proc.returncode != 0:
    sys.exit(f"scaling: {devices} devices failed:\n{proc.stderr[-3000:]}")
  with open(raw, "rb") as f:
    data = pickle.load(f)
  final, records = data["final"], data["records"]
  # The first measurement and the first steps include compilation: leave them out.
  later = [r["seconds"] for r in records[1:]]
  losses = data["losses"]["loss"]
  return {"devices": devices, "steps": final["steps"],
          "steps_per_second": (final["steps"] - 1) / max(final["train_time"], 1e-9),
          "seconds_per_measurement": statistics.median(later) if later else None,
          "final_loss": losses[-1], "lambda1": records[-1]["eigenvalues"][0],
          "platform": data["environment"]["platform"]}


def measurement_memory(corpus: str, examples: int, chunks: list[int]) -> list[dict]:
  """Temp bytes of the compiled measurement on the first `examples` windows, per chunk size."""
  import jax

  import transformer
  from sam_edge.cli import config as cli_config
  from sam_edge.cli import main as cli
  from sam_edge.curvature import measure
  from sam_edge.optim import update
  from sam_edge.tasks import text_problem, text_task
  out = []
  for chunk in chunks:
    cli.parse_flags(transformer.FLAGS, ["transformer", f"--training_data={corpus}", *MODEL,
                                        f"--measure_examples={examples}",
                                        f"--measure_chunk={chunk}"])
    f = transformer.FLAGS
    run = cli_config.of_flags(transformer.TASK, f)
    settings = run.run.measure
    problem = text_problem.build(run.problem, jax.random.PRNGKey(0),
                                 text_task.load_windows(cli_config.flag_values(f), log=lambda s: 0))
    batch = jax.tree.map(lambda a: a[:examples], problem.train_arrays)
    state = update.init_state(problem.params, settings.method.optimizer.make())
    context = measure.Context({}, state.opt_state, state.step, {})
    forward, output_loss = problem.forward, problem.output_loss
    fn = jax.jit(lambda p, c, b, s, k: measure.measure(forward, output_loss, settings, p, c, b, s,
                                                       k))
    compiled = fn.lower(problem.params, context, batch,
                        measure.init_state(settings, problem.params),
                        jax.random.PRNGKey(1)).compile()
    memory = compiled.memory_analysis()
    out.append({"examples": examples, "chunk": chunk,
                "temp_bytes": int(memory.temp_size_in_bytes),
                "argument_bytes": int(memory.argument_size_in_bytes)})
  return out


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--json", help="also write the results as JSON here")
  parser.add_argument("--devices", default="1,2,4,8")
  parser.add_argument("--steps", type=int, default=40)
  parser.add_argument("--corpus", default=os.path.join(REPO, "..", "shared", "data",
                                                       "tinyshakespeare.txt"))
  parser.add_argument("--examples", type=int, default=512)
  parser.add_argument("--chunks", default="512,128,32")
  args = parser.parse_args()
  folder = tempfile.mkdtemp(prefix="scaling_")
  rows = [run_devices(int(d), args.corpus, args.steps, folder) for d in args.devices.split(",")]
  virtual = rows[0]["platform"] == "cpu"
  print(f"transformer {' '.join(MODEL)}, {args.steps} steps, measurements every "
        f"{args.steps // 4}")
  if virtual:
    print("VIRTUAL CPU DEVICES sharing the same cores: NO SPEED FIGURES (they show the sharded "
          "program runs, and its overhead)")
  print(f"{'devices':>7} {'steps/s':>9} {'s/measurement':>14} {'final loss':>11} {'λ1':>9}")
  for r in rows:
    print(f"{r['devices']:>7} {r['steps_per_second']:>9.3f} {r['seconds_per_measurement']:>14.3f} "
          f"{r['final_loss']:>11.5f} {r['lambda1']:>9.4f}")
  memory = measurement_memory(args.corpus, args.examples,
                              [int(c) for c in args.chunks.split(",")])
  print(f"\nmemory of one measurement on the first {args.examples} windows (XLA temp buffers):")
  print(f"{'chunk':>7} {'temp MiB':>9} {'arguments MiB':>14}")
  for m in memory:
    print(f"{m['chunk']:>7} {m['temp_bytes'] / 2**20:>9.1f} {m['argument_bytes'] / 2**20:>14.1f}")
  if args.json:
    with open(args.json, "w") as f:
      json.dump({"virtual_devices": virtual, "devices": rows, "measurement_memory": memory}, f,
                indent=2)


if __name__ == "__main__":
  main()
