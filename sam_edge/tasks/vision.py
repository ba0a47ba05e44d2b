"""The image-classification experiment: flags -> checks -> experiment.Problem.

Data: each split read once into device memory as uint8; inputs x/256 − mean training image
(computed inside the loss, on device); the loss of `--loss` on logits (`losses.py` gives each
as a formula); test error = fraction of test images misclassified. Optionally: a fraction of the
training labels replaced by other labels (`--label_noise`, fixed by the seed), random crops and
flips of the training batches (`--augment`, a pure function of (seed, step); measurements see
the batches un-augmented), label smoothing, and the linearised model (`--regime`).
"""

import dataclasses
import os
import re
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from sam_edge import batching, errors, experiment, linearize, losses, precision
from sam_edge.data import images
from sam_edge.models import resnet, stateful, vision

TRAIN_SIZES = images.TRAIN_SIZES
SUPPORTED = images.SUPPORTED
IMAGE_SIZES = {name: spec.image_shape[0] for name, spec in images.SPECS.items()}
RESIDUAL = tuple(resnet.RESNETS)                 # with BatchNorm
ARCHITECTURES = vision.ARCHITECTURES + RESIDUAL
EVAL_CHUNK = 2000


def folder_problem(flag: str, path: str, must_exist: bool) -> str | None:
  """Why `path` cannot be used as a folder for --flag (None if it can)."""
  if os.path.exists(path):
    return None if os.path.isdir(path) else f"--{flag}={path} is not a folder"
  if must_exist:
    return f"--{flag}={path} does not exist"
  parent = os.path.dirname(os.path.abspath(path))
  return None if os.path.isdir(parent) else f"--{flag}={path}: folder {parent} does not exist"


def cnn_max_blocks(size: int) -> int:
  """The most 2x2 max-pool blocks an image of `size` pixels survives: ⌊log2 size⌋."""
  return size.bit_length() - 1


def problems(f: Any) -> list[str]:
  """Every problem with the image flags, found without loading anything."""
  p = []
  if f.dataset not in SUPPORTED:
    p.append(f"--dataset={f.dataset} is not supported; use one of {', '.join(SUPPORTED)}")
  if f.nn_architecture not in ARCHITECTURES:
    p.append(f"--nn_architecture={f.nn_architecture} is not supported; use one of "
             f"{', '.join(ARCHITECTURES)}")
  for name, low in (("mlp_depth", 2), ("mlp_width", 1), ("cnn_num_blocks", 1),
                    ("cnn_layers_per_block", 1), ("cnn_feature_multiplier", 1)):
    if getattr(f, name) < low:
      p.append(f"--{name} must be at least {low}, got {getattr(f, name)}")
  if f.nn_architecture == "CNN" and f.dataset in IMAGE_SIZES and f.cnn_num_blocks >= 1:
    size = IMAGE_SIZES[f.dataset]
    most = cnn_max_blocks(size)
    if f.cnn_num_blocks > most:
      p.append(f"--cnn_num_blocks={f.cnn_num_blocks} is too deep for the {size}x{size} images of "
               f"{f.dataset}: each block halves the size, so at most {most} blocks")
  if f.nn_architecture in RESIDUAL and f.measure_chunk:
    p.append(f"--measure_chunk is not supported with --nn_architecture={f.nn_architecture}: "
             "BatchNorm's batch statistics couple the examples of the measured batch")
  if f.nn_architecture in RESIDUAL and f.regime == "linearized":
    p.append(f"--regime=linearized is not supported with --nn_architecture={f.nn_architecture} "
             "(BatchNorm's batch statistics make the network no function of one example)")
  for name in ("mini_training_set_num_batches", "mini_test_set_num_batches"):
    if getattr(f, name) is not None and getattr(f, name) < 1:
      p.append(f"--{name} must be at least 1, got {getattr(f, name)}")
  if f.dataset in TRAIN_SIZES and f.batch_size > TRAIN_SIZES[f.dataset]:
    p.append(f"--batch_size={f.batch_size} is larger than the {TRAIN_SIZES[f.dataset]} training "
             f"examples of {f.dataset}")
  if not 0 <= f.label_noise < 1:
    p.append(f"--label_noise must lie in [0, 1), got {f.label_noise}")
  if not 0 <= f.label_smoothing < 1:
    p.append(f"--label_smoothing must lie in [0, 1), got {f.label_smoothing}")
  if f.tfds_data_dir:
    reason = folder_problem("tfds_data_dir", f.tfds_data_dir, must_exist=False)
    if reason:
      p.append(reason)
  if f.manual_dir:
    reason = folder_problem("manual_dir", f.manual_dir, must_exist=True)
    if reason:
      p.append(reason)
    elif f.dataset in SUPPORTED:
      missing = [n for n in images.expected_manual_files(f.dataset)
                 if not os.path.isfile(os.path.join(f.manual_dir, n))]
      if missing:
        p.append(f"--manual_dir={f.manual_dir} lacks the {f.dataset} files {', '.join(missing)}")
  return p


def load(f: Any, log=print) -> images.ImageData:
  """Reads (preparing once if needed) the dataset; bad files are one InputError line."""
  import tensorflow_datasets as tfds
  from tensorflow_datasets.core.download import download_manager
  tfds.disable_progress_bar()
  log(f"reading {f.dataset} from {f.tfds_data_dir or 'the default TFDS folder'}")
  try:
    return images.load_image_dataset(
        f.dataset, batch_size=f.batch_size, data_dir=f.tfds_data_dir, manual_dir=f.manual_dir,
        mini_training_set_num_batches=f.mini_training_set_num_batches,
        mini_test_set_num_batches=f.mini_test_set_num_batches, log=log)
  except download_manager.NonMatchingChecksumError as e:
    found = re.search(r"downloaded to (\S+?),? has wrong checksum", str(e))
    name = os.path.basename(found.group(1)) if found else "a file"
    raise errors.InputError(f"--manual_dir={f.manual_dir}: {name} is not the {f.dataset} file "
                            "TFDS expects (wrong checksum)") from None


def build(f: Any, key: jax.Array) -> experiment.Problem:
  """Loads the data (host arrays; the run places them on its devices) and builds the model (initialised from `key`), the loss and the
  test error. The label noise is drawn from `key` too: fixed by the seed."""
  from sam_edge.data import augment, label_noise
  data = load(f)
  n = len(data.train["label"])
  if f.batch_size > n:
    raise errors.InputError(f"--batch_size={f.batch_size} is larger than the {n} training examples")
  train = data.train              # uint8 images, int32 labels on the host: the run places them
  test = data.test                                  # host arrays: placed by each evaluation
  description = {"training_examples": n, "test_examples": int(len(data.test["label"])),
                 "data_fingerprint": data.fingerprint}
  if f.label_noise > 0:
    labels, flipped = label_noise.noisy_labels(train["label"], data.num_classes, f.label_noise,
                                               label_noise.noise_key(key))
    train = {**train, "label": np.asarray(labels)}
    description["noisy_labels"] = int(np.sum(flipped))
  mean = jnp.asarray(data.mean_image)
  preprocess = lambda x: images.preprocess(x, mean)
  loss = lambda logits, labels: losses.LOSSES[f.loss](logits, labels, f.label_smoothing)
  test_loss = losses.LOSSES[f.loss]                 # on clean labels, without smoothing
  build_problem = _batchnorm_problem if f.nn_architecture in RESIDUAL else _plain_problem
  problem = build_problem(f, key, data.num_classes, preprocess, loss, test_loss, train, test)
  num_params = sum(x.size for x in jax.tree.leaves(problem.params))
  print(f"{f.dataset}: {n} training and {len(data.test['label'])} test examples; "
        f"{f.nn_architecture} with {num_params} parameters", flush=True)
  augment_fn = None
  if f.augment == "flip_crop":
    augment_fn = lambda batch, k, step: {
        **batch, "image": augment.flip_crop(batch["image"], augment.augment_key(k, step))}
  return dataclasses.replace(problem, augment=augment_fn,
                             description={"parameters": int(num_params), **description})


def test_metrics_fn(logits_fn, loss):
  """Jitted `(args, test) -> {"test_error", "test_loss"}` of logits_fn(*args, images): the
  fraction misclassified and the mean loss (the training loss's formula), EVAL_CHUNK images at a
  time (compiled once, reused at every evaluation)."""
  def per_example(args, batch):                     # {[B], [B]}
    logits = logits_fn(*args, batch["image"])
    wrong = (jnp.argmax(logits, -1) != batch["label"]).astype(jnp.float32)
    each = jax.vmap(lambda l, y: loss(l[None], y[None]))(logits, batch["label"])
    return {"test_error": wrong, "test_loss": each}
  metrics = jax.jit(lambda args, arrays: batching.chunked_mean(per_example, args, arrays,
                                                               EVAL_CHUNK))
  return lambda args, arrays: {k: float(v) for k, v in metrics(args, arrays).items()}


def _plain_problem(f, key, num_classes, preprocess, loss, test_loss, train, test
                   ) -> experiment.Problem:
  """MLP or CNN (no model state); the network itself or its linearisation at w0."""
  model = vision.make_model(
      f.nn_architecture, mlp_depth=f.mlp_depth, mlp_width=f.mlp_width,
      cnn_num_blocks=f.cnn_num_blocks, cnn_layers_per_block=f.cnn_layers_per_block,
      cnn_feature_multiplier=f.cnn_feature_multiplier, num_classes=num_classes,
      activation=f.activation)
  params = jax.jit(model.init)(key, preprocess(train["image"][:1]))
  constants, forward = linearize.in_regime(model.apply, params, f.regime)

  def logits(p, constants, image, dtype=jnp.float32):
    return forward(p, constants, preprocess(image).astype(dtype), dtype)

  def loss_in(dtype):
    def loss_fn(p, model_state, batch, constants):
      return loss(logits(p, constants, batch["image"], dtype), batch["label"]), model_state
    return loss_fn

  test_metrics = test_metrics_fn(logits, test_loss)
  return experiment.Problem(
      loss_fn=loss_in(jnp.float32), compute_loss=precision.compute_loss(f.compute_dtype, loss_in),
      params=params, train_arrays=train, constants=constants,
      evaluate=lambda p, s: test_metrics((p, constants), test),
      report=lambda e: f"Test error: {e['test_error']}")


def _batchnorm_problem(f, key, num_classes, preprocess, loss, test_loss, train, test
                       ) -> experiment.Problem:
  """A ResNet/WRN with BatchNorm: the model state holds the running statistics, moved once per
  step from the unperturbed pass; measurements use the measured batch's own statistics (train
  mode: `loss_fn` itself, the loss training differentiates) and never move them; the test error
  uses them."""
  model = resnet.make_resnet(f.nn_architecture, num_classes=num_classes, activation=f.activation)
  params, batch_stats = jax.jit(lambda k, x: stateful.init_variables(model, k, x))(
      key, preprocess(train["image"][:1]))
  test_metrics = test_metrics_fn(stateful.eval_logits(model, preprocess), test_loss)

  def loss_in(dtype):
    train_loss = stateful.train_loss(model, lambda l, y: loss(l.astype(jnp.float32), y),
                                     lambda image: preprocess(image).astype(dtype))

    def loss_fn(p, model_state, batch, constants):
      value, stats = train_loss(precision.cast_floats(p, dtype), model_state["batch_stats"],
                                batch)
      return value, {"batch_stats": precision.like(stats, model_state["batch_stats"])}
    return loss_fn

  return experiment.Problem(
      loss_fn=loss_in(jnp.float32), compute_loss=precision.compute_loss(f.compute_dtype, loss_in),
      params=params, train_arrays=train,
      model_state={"batch_stats": batch_stats},
      evaluate=lambda p, s: test_metrics((p, s["batch_stats"]), test),
      report=lambda e: f"Test error: {e['test_error']}")
