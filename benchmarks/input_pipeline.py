"""Images per second the streaming input pipeline delivers (`sam_edge.data.stream`: JPEG decoding
and the training augmentation, the Inception-style random-resized crop to 224×224 and a flip)
with 1 and 2 worker processes, beside the images per second one SAM training step of a ResNet
consumes here: whether the pipeline can feed the step.

Data: --images (2,000) random-ish 256×256 RGB JPEGs (smooth colour gradients plus noise, quality
90) written once to an ArrayRecord file in --data_dir (kept for later runs).

  pipeline   this process's batches of --batch_size from `stream.training_batches` (the run's
             own function), after the batches that start the workers and drain what they made
             ahead: --batches batches timed, images / seconds;
  step       the training step of `run.components` (SAM, ρ = 0.05, heavy ball) of
             --architecture (ResNet50, the figure asked for) on one fixed, placed batch of
             --step_batch 224×224 images, after WARMUP calls that compile it, each waited for
             on the device: images / seconds.

The three are measured in turn, --repeats times (interleaved, so that a slow moment of a shared
machine falls on each alike); each figure is the least time of its repeats (the house rule:
other work only slows a measurement down). `--json PATH` writes

    {"workers_1": {"images_per_second": x}, "workers_2": {"images_per_second": x},
     "resnet50_sam_step_images_per_second": x, "step_architecture": "ResNet50"}

(the step's figure keeps the issue's key whatever --architecture is; "step_architecture" names the
network that ran).

    python benchmarks/input_pipeline.py [--json PATH] [--repeats 3] [--architecture ResNet50]
"""

import argparse
import io
import json
import os
import sys
import tempfile
import time

import numpy as np

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

from sam_edge.data import stream, stream_order, stream_sources  # noqa: E402

SIDE, SIZE = 256, 224
WARMUP = 2
BUFFERED = 2                   # batches each worker makes ahead (`stream._iterate`)
WORKERS = (1, 2)


def write_images(path: str, count: int, seed: int = 0) -> None:
  """`count` random-ish SIDE×SIDE JPEGs with labels in [0, 1000) (module doc)."""
  from PIL import Image
  rng = np.random.default_rng(seed)
  grid = np.add.outer(np.arange(SIDE), np.arange(SIDE)).astype(np.float64)
  encoded, labels = [], rng.integers(0, 1000, count)
  for _ in range(count):
    tint = rng.uniform(0.2, 3.0, 3)
    pixels = (grid[:, :, None] * tint) % 256 + rng.integers(0, 50, (SIDE, SIDE, 3))
    out = io.BytesIO()
    Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8)).save(out, "JPEG", quality=90)
    encoded.append(out.getvalue())
  stream_sources.write_image_records(path, encoded, labels)


def records(data_dir: str, count: int) -> stream_sources.ImageRecords:
  """The benchmark's ArrayRecord file of `count` JPEGs in `data_dir`, written if missing."""
  os.makedirs(data_dir, exist_ok=True)
  path = os.path.join(data_dir, f"jpegs_{count}_{SIDE}.array_record")
  if not os.path.exists(path):
    print(f"writing {count} {SIDE}x{SIDE} JPEGs to {path} (once)", flush=True)
    write_images(path + ".tmp", count)
    os.replace(path + ".tmp", path)
  return stream_sources.ImageRecords((path,))


def pipeline_seconds(source, batch_size: int, batches: int, workers: int, first: int) -> float:
  """Seconds for `batches` training batches, after the BUFFERED·W + 1 batches from step `first`
  on that start the workers and drain what they had made ahead (each keeps BUFFERED batches)."""
  order = stream_order.StreamOrder(len(source), batch_size, seed=0)
  it = stream.training_batches(source, order, stream.Transform(SIZE, True, 0, 3), first, workers)
  try:
    for _ in range(BUFFERED * workers + 1):
      next(it)
    start = time.perf_counter()
    for _ in range(batches):
      next(it)
    return time.perf_counter() - start
  finally:
    stream.close(it)


def step_timer(source, architecture: str, batch_size: int):
  """(the architecture that runs, a function timing one SAM step of it on a fixed batch)."""
  import jax

  import image_classification
  from sam_edge.cli import config as cli_config
  from sam_edge.cli import main as cli
  from sam_edge.data import order as order_lib
  from sam_edge.optim import update
  from sam_edge.run import components, devices
  from sam_edge.run import problem as problem_lib
  from sam_edge.tasks import image_stream
  arch = architecture
  f = image_classification.flag_values()
  cli.parse_flags(f, ["bench", "--data_pipeline=stream", f"--image_size={SIZE}",
                      f"--nn_architecture={arch}", f"--batch_size={batch_size}", "--rho=0.05",
                      "--optimizer=momentum", "--step_size=0.1", "--data_workers=0"])
  found = image_classification.problems(f)
  if found:
    sys.exit(f"input_pipeline: {found[0]}")
  keys = problem_lib.keys(0)
  sources = image_stream.Sources(source, source, 1000)
  run = cli_config.of_flags(image_classification.TASK, f)
  problem = image_stream.build(run.problem, keys["init"], sources, log=lambda line: None)
  settings = run.run
  place = devices.placement(1)
  whole = order_lib.ShuffledOrder(batch_size, batch_size)
  step = components.train_steps(problem, settings, whole, place)(0)
  batch = place.shard(stream.read_examples(
      source, np.arange(batch_size), stream.Transform(SIZE, True, 0, 3)))
  constants = place.replicate(problem.constants)
  held = {"state": place.replicate(update.init_state(
      problem.params, settings.method.optimizer.make(), problem.model_state, settings.method.sam))}

  def timed() -> float:
    start = time.perf_counter()
    held["state"], _, loss = step(held["state"], {}, batch, keys["data"], None, constants)
    jax.block_until_ready((held["state"], loss))
    return time.perf_counter() - start
  for _ in range(WARMUP):
    timed()
  return arch, timed


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--json", help="also write the figures to this JSON file")
  parser.add_argument("--repeats", type=int, default=3)
  parser.add_argument("--images", type=int, default=2000)
  parser.add_argument("--batch_size", type=int, default=32, help="the pipeline's batches")
  parser.add_argument("--batches", type=int, default=24, help="batches timed per repeat")
  parser.add_argument("--architecture", default="ResNet50",
                      help="the stepped network (a name of --nn_architecture)")
  parser.add_argument("--step_batch", type=int, default=8, help="the step's batch size")
  parser.add_argument("--data_dir", default=os.path.join(tempfile.gettempdir(),
                                                         "sam_edge_input_pipeline"))
  args = parser.parse_args()
  source = records(args.data_dir, args.images)
  arch, step = step_timer(source, args.architecture, args.step_batch)
  seconds = {w: [] for w in WORKERS}
  steps = []
  for r in range(args.repeats):
    for w in WORKERS:
      span = args.batches + BUFFERED * max(WORKERS) + 1
      first = (r * len(WORKERS) + w) * span
      seconds[w].append(pipeline_seconds(source, args.batch_size, args.batches, w, first))
    steps.append(step())
    print(f"repeat {r}: " + ", ".join(f"{w} worker(s) {seconds[w][-1]:.3f}s" for w in WORKERS)
          + f", {arch} SAM step {steps[-1]:.3f}s", flush=True)
  images = args.batch_size * args.batches
  out = {f"workers_{w}": {"images_per_second": images / min(seconds[w])} for w in WORKERS}
  out["resnet50_sam_step_images_per_second"] = args.step_batch / min(steps)
  out["step_architecture"] = arch
  print(f"the step ran {arch}, batch {args.step_batch}, {SIZE}x{SIZE}, on {os.cpu_count()} "
        "CPU(s)")
  print(json.dumps(out))
  if args.json:
    with open(args.json, "w", encoding="utf-8") as handle:
      json.dump(out, handle, indent=1)


if __name__ == "__main__":
  main()
