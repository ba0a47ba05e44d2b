"""The image-classification experiment: flags -> checks -> experiment.Problem.

Data: each split read once into device memory as uint8; inputs x/256 − mean training image
(computed inside the loss, on device); loss squared error (or cross-entropy) on logits;
test error = fraction of test images misclassified.
"""

import os
import re
from typing import Any

import jax
import jax.numpy as jnp

from sam_edge import batching, errors, experiment, losses
from sam_edge.models import vision

TRAIN_SIZES = {"mnist": 60000, "fashion_mnist": 60000, "cifar10": 50000}
SUPPORTED = tuple(TRAIN_SIZES)
EVAL_CHUNK = 2000


def folder_problem(flag: str, path: str, must_exist: bool) -> str | None:
  """Why `path` cannot be used as a folder for --flag (None if it can)."""
  if os.path.exists(path):
    return None if os.path.isdir(path) else f"--{flag}={path} is not a folder"
  if must_exist:
    return f"--{flag}={path} does not exist"
  parent = os.path.dirname(os.path.abspath(path))
  return None if os.path.isdir(parent) else f"--{flag}={path}: folder {parent} does not exist"


def problems(f: Any) -> list[str]:
  """Every problem with the image flags, found without loading anything."""
  p = []
  if f.dataset not in SUPPORTED:
    p.append(f"--dataset={f.dataset} is not supported; use one of {', '.join(SUPPORTED)}")
  if f.nn_architecture not in vision.ARCHITECTURES:
    p.append(f"--nn_architecture={f.nn_architecture} is not supported; use MLP or CNN")
  for name, low in (("mlp_depth", 2), ("mlp_width", 1), ("cnn_num_blocks", 1),
                    ("cnn_layers_per_block", 1), ("cnn_feature_multiplier", 1)):
    if getattr(f, name) < low:
      p.append(f"--{name} must be at least {low}, got {getattr(f, name)}")
  for name in ("mini_training_set_num_batches", "mini_test_set_num_batches"):
    if getattr(f, name) is not None and getattr(f, name) < 1:
      p.append(f"--{name} must be at least 1, got {getattr(f, name)}")
  if f.dataset in TRAIN_SIZES and f.batch_size > TRAIN_SIZES[f.dataset]:
    p.append(f"--batch_size={f.batch_size} is larger than the {TRAIN_SIZES[f.dataset]} training "
             f"examples of {f.dataset}")
  if f.tfds_data_dir:
    reason = folder_problem("tfds_data_dir", f.tfds_data_dir, must_exist=False)
    if reason:
      p.append(reason)
  if f.manual_dir:
    reason = folder_problem("manual_dir", f.manual_dir, must_exist=True)
    if reason:
      p.append(reason)
    elif f.dataset in SUPPORTED:
      from sam_edge.data import images
      missing = [n for n in images.expected_manual_files(f.dataset)
                 if not os.path.isfile(os.path.join(f.manual_dir, n))]
      if missing:
        p.append(f"--manual_dir={f.manual_dir} lacks the {f.dataset} files {', '.join(missing)}")
  return p


def build(f: Any, key: jax.Array) -> experiment.Problem:
  """Loads the data to the device and builds the model, loss and test error."""
  from sam_edge.data import images
  import tensorflow_datasets as tfds
  from tensorflow_datasets.core.download import download_manager
  tfds.disable_progress_bar()
  print(f"reading {f.dataset} through TFDS (prepared once into "
        f"{f.tfds_data_dir or 'its default folder'}"
        + (f" from {f.manual_dir})" if f.manual_dir else ")"), flush=True)
  try:
    data = images.load_image_dataset(
        f.dataset, batch_size=f.batch_size, data_dir=f.tfds_data_dir, manual_dir=f.manual_dir,
        mini_training_set_num_batches=f.mini_training_set_num_batches,
        mini_test_set_num_batches=f.mini_test_set_num_batches)
  except download_manager.NonMatchingChecksumError as e:
    found = re.search(r"downloaded to (\S+?),? has wrong checksum", str(e))
    name = os.path.basename(found.group(1)) if found else "a file"
    raise errors.InputError(f"--manual_dir={f.manual_dir}: {name} is not the {f.dataset} file "
                            "TFDS expects (wrong checksum)") from None
  n = len(data.train["label"])
  if f.batch_size > n:
    raise errors.InputError(f"--batch_size={f.batch_size} is larger than the {n} training examples")
  model = vision.make_model(
      f.nn_architecture, mlp_depth=f.mlp_depth, mlp_width=f.mlp_width,
      cnn_num_blocks=f.cnn_num_blocks, cnn_layers_per_block=f.cnn_layers_per_block,
      cnn_feature_multiplier=f.cnn_feature_multiplier, num_classes=data.num_classes)
  mean = jnp.asarray(data.mean_image)
  loss = losses.LOSSES[f.loss]
  train = jax.tree.map(jnp.asarray, data.train)     # uint8 images, int32 labels, on device
  test = jax.tree.map(jnp.asarray, data.test)

  def logits(params, batch):
    return model.apply(params, images.preprocess(batch["image"], mean))

  def loss_fn(params, batch):
    return loss(logits(params, batch), batch["label"])

  def misclassified(params, batch):                 # [B] 0/1
    return (jnp.argmax(logits(params, batch), -1) != batch["label"]).astype(jnp.float32)

  test_error = jax.jit(lambda params, arrays: batching.chunked_mean(
      misclassified, params, arrays, EVAL_CHUNK))
  params = jax.jit(model.init)(key, images.preprocess(train["image"][:1], mean))
  num_params = sum(x.size for x in jax.tree.leaves(params))
  print(f"{f.dataset}: {n} training and {len(data.test['label'])} test examples; "
        f"{f.nn_architecture} with {num_params} parameters")
  return experiment.Problem(
      loss_fn=loss_fn, params=params, train_arrays=train,
      evaluate=lambda p: {"test_error": float(test_error(p, test))},
      report=lambda e: f"Test error: {e['test_error']}",
      description={"parameters": int(num_params), "training_examples": n,
                   "test_examples": int(len(data.test["label"]))})
