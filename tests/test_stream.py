"""The streaming input pipeline (`--data_pipeline=stream`): its order, its batches against a
reading by hand, the choice of pipeline, the checkpointed position, and a streamed run stopped
and resumed against the uninterrupted one."""

import io
import pathlib
import pickle
import subprocess
import sys
import time
import types

import numpy as np
import pytest
from PIL import Image

import image_classification
from sam_edge import errors
from sam_edge.cli import main as cli
from sam_edge.data import host_augment, pipeline_choice, stream, stream_order, stream_sources
from sam_edge.tasks import image_stream, image_task
from tests.helpers import REPO, mocked_tfds


def jpeg(pixels: np.ndarray) -> bytes:
  """`pixels` uint8 [H, W] or [H, W, 3] as JPEG bytes."""
  out = io.BytesIO()
  Image.fromarray(pixels).save(out, format="JPEG", quality=90)
  return out.getvalue()


def write_jpegs(path, count: int, shape: tuple, classes: int = 10, seed: int = 0) -> None:
  """`count` random-ish JPEGs of `shape` (smooth gradients plus noise) and their labels, written
  to the ArrayRecord file `path` (`stream_sources.write_image_records`)."""
  rng = np.random.default_rng(seed)
  labels = rng.integers(0, classes, count)
  h, w = shape[:2]
  grid = np.add.outer(np.arange(h), np.arange(w)).astype(np.float64)
  images = []
  for label in labels:
    base = grid * (3 + label) % 256
    noise = rng.integers(0, 60, shape)
    pixels = np.clip(base.reshape(h, w, *([1] * (len(shape) - 2))) + noise, 0, 255)
    images.append(jpeg(pixels.astype(np.uint8)))
  stream_sources.write_image_records(str(path), images, labels)


@pytest.fixture
def records(tmp_path):
  """40 RGB JPEGs of 20×24 in one ArrayRecord file."""
  path = tmp_path / "images.array_record"
  write_jpegs(path, 40, (20, 24, 3))
  return stream_sources.ImageRecords((str(path),))


def test_each_epoch_is_a_fresh_permutation_and_steps_drop_the_remainder():
  order = stream_order.StreamOrder(23, 5, seed=3)
  assert order.steps_per_epoch == 4
  epochs = [np.concatenate([order.global_indices(e * 4 + q) for q in range(4)]) for e in range(3)]
  for seen in epochs:
    assert len(set(seen.tolist())) == 20 and seen.max() < 23
  assert not np.array_equal(epochs[0], epochs[1])
  again = stream_order.StreamOrder(23, 5, seed=3)
  assert np.array_equal(again.global_indices(9), order.global_indices(9))   # random access
  assert not np.array_equal(stream_order.StreamOrder(23, 5, seed=4).global_indices(9),
                            order.global_indices(9))


@pytest.mark.parametrize("processes", [2, 3])
def test_processes_read_disjoint_slices_that_make_the_global_batch(processes):
  b = 12
  orders = [stream_order.StreamOrder(50, b, 7, p, processes) for p in range(processes)]
  for step in (0, 5, 17):
    whole = orders[0].global_indices(step)
    parts = [o.local_indices(step) for o in orders]
    assert np.array_equal(np.concatenate(parts), whole)          # in process order, row for row
    for p, o in enumerate(orders):
      for i in range(b // processes):
        index, g = o.local_example(step * (b // processes) + i)
        assert index == parts[p][i] and g == step * b + p * (b // processes) + i
  with pytest.raises(ValueError, match="not divisible"):
    stream_order.StreamOrder(50, 10, 0, 0, 3)


def by_hand(source, order, step, size, seed):
  """Step `step`'s batch read directly: the order's indices, Pillow's decoding, the crops drawn
  from each example's own generator."""
  out = []
  for j, index in enumerate(order.global_indices(step)):
    record = source[int(index)]
    with Image.open(io.BytesIO(record["image"])) as im:
      pixels = np.asarray(im.convert("RGB"))
    rng = stream_order.example_rng(seed, step * order.batch_size + j)
    out.append(host_augment.train_crop(pixels, size, rng))
  return np.stack(out)


def test_streamed_batches_equal_a_reading_by_hand(records):
  order = stream_order.StreamOrder(len(records), 8, seed=1)
  transform = stream.Transform(16, train=True, seed=1)
  batches = stream.training_batches(records, order, transform, 3, workers=0)
  for step in (3, 4, 5, 6):                  # into the second epoch (5 steps per epoch)
    got = next(batches)
    assert got["image"].shape == (8, 16, 16, 3) and got["image"].dtype == np.uint8
    assert np.array_equal(got["image"], by_hand(records, order, step, 16, 1))
    labels = [records[int(i)]["label"] for i in order.global_indices(step)]
    assert got["label"].tolist() == labels
  later = next(stream.training_batches(records, order, transform, 6, workers=0))
  assert np.array_equal(later["image"], by_hand(records, order, 6, 16, 1))


@pytest.mark.slow
def test_worker_processes_hand_back_the_batches_of_the_main_process(records):
  """grain's worker processes (spawned) decode and crop the same batches, in order."""
  order = stream_order.StreamOrder(len(records), 8, seed=1)
  transform = stream.Transform(16, train=True, seed=1)
  here = stream.training_batches(records, order, transform, 2, workers=0)
  there = stream.training_batches(records, order, transform, 2, workers=2)
  try:
    for _ in range(5):
      a, b = next(here), next(there)
      assert np.array_equal(a["image"], b["image"]) and np.array_equal(a["label"], b["label"])
  finally:
    stream.close(there)


def test_listed_examples_come_in_their_order_the_last_batch_short(records):
  indices = [5, 3, 39, 0, 7]
  got = list(stream.listed_batches(records, indices, stream.Transform(), 2))
  assert [len(b["label"]) for b in got] == [2, 2, 1]
  assert np.concatenate([b["label"] for b in got]).tolist() == [records[i]["label"]
                                                                for i in indices]
  assert got[2]["image"].shape == (1, 20, 24, 3)


def test_evaluation_crop_is_the_centre_of_the_resized_image():
  image = np.arange(40 * 60 * 3, dtype=np.uint32).reshape(40, 60, 3).astype(np.uint8)
  out = host_augment.centre_crop(image, 16)
  assert out.shape == (16, 16, 3)
  resized = host_augment.resize(image, 18, 27)       # shorter side round(16 / 0.875) = 18
  assert np.array_equal(out, resized[1:17, 5:21])


def test_random_resized_crops_stay_inside_the_image_and_follow_their_key():
  for g in range(50):
    top, left, h, w = host_augment.crop_window(30, 50, stream_order.example_rng(0, g))
    assert 0 <= top and top + h <= 30 and 0 <= left and left + w <= 50
    assert 0.08 * 1500 * 0.9 <= h * w <= 1500
  a = host_augment.crop_window(30, 50, stream_order.example_rng(0, 7))
  assert a == host_augment.crop_window(30, 50, stream_order.example_rng(0, 7))


def test_auto_streams_a_dataset_above_the_memory_cap():
  assert pipeline_choice.choose("auto", 47e6, 8.0, "mnist") == ("memory", None)
  kind, why = pipeline_choice.choose("auto", 47e6, 0.01, "mnist")
  assert kind == "stream" and "--data_memory_cap_gb=0.01" in why
  assert pipeline_choice.choose("auto", float("inf"), 8.0, "imagenet2012")[0] == "stream"
  f = image_classification.flag_values()
  cli.parse_flags(f, ["prog", "--data_memory_cap_gb=0.01", "--batch_size=100"])
  assert image_classification.problems(f) == []
  assert image_task.streams("mnist", "auto", 0.01)
  assert f.measure_examples == 100                                   # measured on a fixed set
  f = image_classification.flag_values()
  cli.parse_flags(f, ["prog", "--batch_size=100"])
  assert image_classification.problems(f) == [] and not image_task.streams("mnist", "auto", 8.0)
  assert f.measure_examples is None


@pytest.mark.parametrize("flag, words", [
    ("--data_workers=-1", "--data_workers must be at least 0"),
    ("--data_memory_cap_gb=0", "--data_memory_cap_gb must be > 0"),
    ("--image_size=32", "--image_size applies to the stream only"),
])
def test_bad_pipeline_flags_are_one_line(flag, words):
  f = image_classification.flag_values()
  cli.parse_flags(f, ["prog", flag])
  found = image_classification.problems(f)
  assert len(found) == 1 and words in found[0]


def test_bad_pipeline_values_exit_2_with_one_line(capsys):
  with pytest.raises(SystemExit) as e:
    cli.parse_flags(image_classification.flag_values(), ["prog", "--data_pipeline=disk"])
  assert e.value.code == 2
  assert len(capsys.readouterr().err.strip().splitlines()) == 1
  cli.parse_flags(image_classification.FLAGS, ["image_classification", "--data_workers=-1"])
  assert image_classification.main([]) == 2
  err = capsys.readouterr().err.strip().splitlines()
  assert len(err) == 1 and "--data_workers must be at least 0, got -1" in err[0]


def test_a_stream_refuses_what_it_does_not_support():
  f = image_classification.flag_values()
  cli.parse_flags(f, ["prog", "--data_pipeline=stream", "--validation_fraction=0.1",
                      "--batch_size=10"])
  assert image_classification.problems(f) == [
      "--validation_fraction is not supported with the streamed input pipeline "
      "(--data_pipeline=stream)"]


def test_a_checkpoint_keeps_the_stream_position_and_a_resume_checks_it():
  order = stream_order.StreamOrder(100, 10, seed=2)
  saved = stream.position(order, 7)
  assert stream.position_problem(saved, order, 7) is None
  assert stream.position_problem({}, order, 7) is None           # an older checkpoint
  assert "next_step 7 (now 8)" in stream.position_problem(saved, order, 8)
  other = stream_order.StreamOrder(100, 20, seed=2)
  assert "batch_size 10 (now 20)" in stream.position_problem(saved, other, 7)
  from sam_edge.run import loop, meta_json
  progress = loop.Progress(stream_position=saved)
  assert meta_json.progress_from_json(meta_json.progress_to_json(progress)) == progress
  older = meta_json.progress_to_json(loop.Progress())
  del older["stream_position"]                     # a checkpoint written before streams
  assert meta_json.progress_from_json(older).stream_position == {}


TINY = ["--mlp_width=16", "--mlp_depth=2", "--batch_size=8", "--rho=0.1", "--data_workers=0",
        "--data_memory_cap_gb=0.001", "--measure_every_steps=3", "--eval_every_steps=4",
        "--lanczos_max_steps=5", "--num_principal_components=1", "--measure_examples=16",
        "--step_size=0.05", "--image_size=20", "--augment=flip_crop"]


@pytest.fixture
def streamed_mnist(tmp_path, monkeypatch):
  """--dataset=mnist streamed from 96 training and 40 test JPEGs of 28×28 (grayscale); the runs
  train on host crops to 20×20 (--image_size), flipped and cropped again on the device
  (--augment), and evaluate on centre crops."""
  write_jpegs(tmp_path / "train.array_record", 96, (28, 28), seed=1)
  write_jpegs(tmp_path / "test.array_record", 40, (28, 28), seed=2)
  sources = image_stream.Sources(
      stream_sources.ImageRecords((str(tmp_path / "train.array_record"),)),
      stream_sources.ImageRecords((str(tmp_path / "test.array_record"),)), 10)
  monkeypatch.setattr(image_stream, "open_sources", lambda f, log: sources)
  return sources


def run(args, folder):
  folder.mkdir(exist_ok=True)
  outs = {"eigs_curve_output": "", "eigs_se_only_output": "", "alignment_curve_output": "",
          "loss_curve_output": "", "raw_data_output": str(folder / "raw.pkl")}
  argv = ["image_classification", *args, *(f"--{k}={v}" for k, v in outs.items())]
  cli.parse_flags(image_classification.FLAGS, argv)
  assert image_classification.main([]) == 0
  return pickle.loads((folder / "raw.pkl").read_bytes())


def without_timing(entries):
  return [{k: v for k, v in e.items() if k not in ("seconds", "time")} for e in entries]


@pytest.mark.slow
def test_streamed_run_resumed_at_an_arbitrary_step_equals_the_uninterrupted_one(
    streamed_mnist, tmp_path, capsys):
  whole = run([*TINY, "--max_steps=17", f"--checkpoint_dir={tmp_path / 'ck_a'}"], tmp_path / "a")
  out = capsys.readouterr().out                 # auto: MNIST's 47 MB exceed the cap
  assert "streaming mnist: its training split (0.047 GB decoded) exceeds" in out
  assert "measurements use a fixed set of 16 training examples" in out
  part = run([*TINY, "--max_steps=7", f"--checkpoint_dir={tmp_path / 'ck_b'}"], tmp_path / "b")
  assert part["final"]["steps"] == 7
  resumed = run([*TINY, "--max_steps=17", f"--checkpoint_dir={tmp_path / 'ck_b'}", "--resume",
                 "--data_workers=1"], tmp_path / "c")      # a worker count may change on resume
  assert resumed["final"]["steps"] == 17 and whole["final"]["epochs"] == 17 / 12
  assert without_timing(resumed["records"]) == without_timing(whole["records"])
  assert without_timing(resumed["evaluations"]) == without_timing(whole["evaluations"])
  assert {"test_error", "test_loss", "test_error_top5"} <= set(whole["evaluations"][0])
  assert resumed["losses"] == whole["losses"]
  assert resumed["final"]["test_error"] == whole["final"]["test_error"]


def test_an_evaluation_with_the_moving_average_decodes_the_held_out_split_once(
    streamed_mnist, monkeypatch):
  import jax

  from sam_edge.cli import config as cli_config
  from sam_edge.run import components
  f = image_classification.flag_values()
  cli.parse_flags(f, ["image_classification", *TINY, "--data_pipeline=stream"])
  assert image_classification.problems(f) == []
  config = cli_config.of_flags(image_classification.TASK, f)
  problem = image_stream.build(config.problem, jax.random.key(0), streamed_mnist,
                               log=lambda line: None)
  average = jax.tree.map(lambda x: 0.5 * x, problem.params)
  state = types.SimpleNamespace(params=problem.params, model_state=problem.model_state,
                                ema={"params": average, "model_state": problem.model_state})
  reads, listed = [], stream.listed_batches
  monkeypatch.setattr(stream, "listed_batches", lambda *a: reads.append(a) or listed(*a))
  both = components.evaluation(problem, state)
  assert len(reads) == 1                      # w and the average from one decoding of the split
  alone = problem.evaluate(problem.params, problem.model_state, problem.constants)
  averaged = problem.evaluate(average, problem.model_state, problem.constants)
  assert {k: both[k] for k in alone} == alone
  assert {k: both[f"ema_{k}"] for k in averaged} == averaged
  assert averaged["test_loss"] != alone["test_loss"]


@pytest.mark.slow
def test_real_mnist_is_prepared_as_array_record_and_streamed(shared_data, tmp_path, capsys):
  """TFDS's own path: MNIST prepared from its IDX files into ArrayRecord files, its records read
  at random by TFDS's data source, decoded in a grain worker process."""
  tfds_dir = tmp_path / "tfds"
  raw = run(["--data_pipeline=stream", f"--tfds_data_dir={tfds_dir}",
             f"--manual_dir={shared_data / 'mnist'}", "--batch_size=50", "--max_steps=3",
             "--mini_test_set_num_batches=2", "--mlp_width=8", "--mlp_depth=2",
             "--measure_every_steps=2", "--lanczos_max_steps=3", "--data_workers=1",
             "--eval_every_steps=2"], tmp_path / "run")
  out = capsys.readouterr().out
  assert "preparing mnist from --manual_dir=" in out
  assert "mnist (streamed, --data_workers=1): 60000 training, 100 test examples" in out
  assert sorted(p.name for p in (tfds_dir / "mnist" / "3.0.1").glob("*.array_record*")) == [
      "mnist-test.array_record-00000-of-00001", "mnist-train.array_record-00000-of-00001"]
  assert raw["final"]["steps"] == 3 and [r["step"] for r in raw["records"]] == [0, 2]
  assert 0 <= raw["final"]["test_error"] <= 1 and raw["final"]["steps_per_epoch"] == 1200


def test_a_dataset_prepared_as_tfrecord_is_one_line_naming_the_format(tmp_path):
  """TFDS refuses to open a TFRecord folder as ArrayRecord (a ValueError of its own): the stream
  says so in one InputError line, before anything is read."""
  with mocked_tfds("mnist", tmp_path) as data_dir:
    with pytest.raises(errors.InputError) as e:
      stream_sources.tfds_split("mnist", str(data_dir), "train", lambda builder: None)
  line = str(e.value)
  assert "\n" not in line and "cannot be streamed" in line and "ArrayRecord" in line


@pytest.mark.slow
def test_workers_die_with_the_process_and_ignore_the_groups_signals(tmp_path):
  """A process streaming with 2 workers reads a batch from each, gets SIGINT with its whole group
  (a terminal's Ctrl-C; the workers must not die under the training process, which answers it),
  reads on, then ends at once (os._exit, as an immediate stop or SIGKILL leaves them): the
  workers go with it."""
  path = tmp_path / "images.array_record"
  write_jpegs(path, 40, (20, 24, 3))
  code = f"""
import multiprocessing, os, signal, sys, time
from sam_edge.data import stream, stream_order, stream_sources
if __name__ == "__main__":
  records = stream_sources.ImageRecords(({str(path)!r},))
  order = stream_order.StreamOrder(len(records), 8, seed=1)
  batches = stream.training_batches(records, order, stream.Transform(16, True, 1), 0, workers=2)
  next(batches), next(batches)        # batches 0 and 1 come from workers 0 and 1: both started
  signal.signal(signal.SIGINT, signal.SIG_IGN)
  os.killpg(os.getpgid(0), signal.SIGINT)
  time.sleep(1)
  for _ in range(12):
    next(batches)
  print(" ".join(str(p.pid) for p in multiprocessing.active_children()), flush=True)
  os._exit(0)
"""
  proc = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True,
                        timeout=120, start_new_session=True)
  assert proc.returncode == 0, proc.stderr[-3000:]
  workers = [int(p) for p in proc.stdout.split()]
  assert len(workers) >= 2

  def alive(pid: int) -> bool:
    try:
      state = pathlib.Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0]
    except FileNotFoundError:
      return False
    return state not in ("Z", "X")
  deadline = time.monotonic() + 10
  while any(alive(p) for p in workers) and time.monotonic() < deadline:
    time.sleep(0.1)
  assert not any(alive(p) for p in workers)


def test_palette_and_alpha_images_decode_to_rgb():
  rgba = np.random.default_rng(0).integers(0, 256, (5, 6, 4)).astype(np.uint8)
  for image in (Image.fromarray(rgba, "RGBA"), Image.fromarray(rgba[..., :3]).convert("P")):
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    decoded = host_augment.decode(buffer.getvalue())
    assert decoded.shape == (5, 6, 3) and decoded.dtype == np.uint8
