"""The image-classification problem: data + network + loss -> `run.problem.Problem`.

Data: each split read once into host memory as uint8; inputs normalised inside the forward pass,
on device (`--normalize`, `data.normalize`: by default x/256 − mean training image); the loss of
`--loss` on logits (`models.losses` gives each as a formula); test error = fraction of test images
misclassified. Optionally: a fraction of the training labels replaced by other labels
(`--label_noise`, fixed by the seed), augmentation of the training batches' raw images
(`--augment`, `data.augment_pipeline`, a pure function of (seed, step); measurements see the
batches un-augmented), label smoothing, and the linearized model (`--regime`). The flags are
checked by `image_task` before anything here runs.
"""

import dataclasses
import os
import re
import sys
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from sam_edge import errors
from sam_edge.data import (
  augment,
  augment_pipeline,
  batching,
  images,
  input_spec,
  label_noise,
  normalize,
  order,
  validation,
)
from sam_edge.models import linearize, losses, precision, registry, stateful
from sam_edge.run.problem import Problem
from sam_edge.tasks.image_config import ImageConfig

EVAL_CHUNK = 2000
TOP_K, TOP_K_MIN_CLASSES = 5, 10        # the top-5 error, recorded with at least 10 classes


def load(c: ImageConfig, log=print) -> images.ImageData:
  """Reads (preparing once if needed) the dataset; bad files are one InputError line."""
  d = c.data
  log(f"reading {d.dataset} from {d.tfds_data_dir or 'the default TFDS folder'}")
  try:
    return images.load_image_dataset(
        d.dataset, batch_size=d.batch_size, data_dir=d.tfds_data_dir, manual_dir=d.manual_dir,
        mini_training_set_num_batches=d.mini_training_set_num_batches,
        mini_test_set_num_batches=d.mini_test_set_num_batches, log=log)
  except Exception as e:  # pylint: disable=broad-except
    # TFDS's checksum error (its module is loaded if one was raised)
    tfds_download = sys.modules.get("tensorflow_datasets.core.download.download_manager")
    if tfds_download is None or not isinstance(e, tfds_download.NonMatchingChecksumError):
      raise
    found = re.search(r"downloaded to (\S+?),? has wrong checksum", str(e))
    name = os.path.basename(found.group(1)) if found else "a file"
    raise errors.InputError(f"--manual_dir={d.manual_dir}: {name} is not the {d.dataset} file "
                            "TFDS expects (wrong checksum)") from None


def build(c: ImageConfig, key: jax.Array) -> Problem:
  """Loads the data (host arrays; the run places them on its devices) and builds the model
  (initialised from `key`), the loss and the test metrics. The label noise is drawn from `key`
  too: fixed by the seed."""
  data, held_out = hold_out(load(c), c.data.validation_fraction, key)
  n = len(data.train["label"])
  if c.data.batch_size > n:
    raise errors.InputError(f"--batch_size={c.data.batch_size} is larger than the {n} training "
                            "examples")
  train = data.train              # uint8 images, int32 labels on the host: the run places them
  description = {"training_examples": n, "test_examples": int(len(data.test["label"])),
                 "data_fingerprint": data.fingerprint}
  if "validation" in held_out:
    description["validation_examples"] = int(len(held_out["validation"]["label"]))
  if c.data.label_noise > 0:
    labels, flipped = label_noise.noisy_labels(train["label"], data.num_classes, c.data.label_noise,
                                               label_noise.noise_key(key))
    train = {**train, "label": np.asarray(labels)}
    description["noisy_labels"] = int(np.sum(flipped))
  preprocess = normalize.of(c.data.normalize, train["image"], data.mean_image)
  problem = network_problem(c, key, train, data.num_classes, preprocess,
                            lambda per_example: held_out_metrics_fn(per_example, held_out))
  num_params = sum(x.size for x in jax.tree.leaves(problem.params))
  sizes = ", ".join(f"{len(split['label'])} {name}" for name, split in held_out.items())
  print(f"{c.data.dataset}: {n} training, {sizes} examples; {c.model.nn_architecture} with "
        f"{num_params} parameters", flush=True)
  batch_order = (order.StreamOrder(n, c.data.batch_size) if c.data.batch_order == "reference"
                 else order.ShuffledOrder(n, c.data.batch_size))
  return dataclasses.replace(problem, order=batch_order, held_out=held_out,
                             description={"parameters": int(num_params), **description})


def network_problem(c: ImageConfig, key: jax.Array, train: dict, num_classes: int,
                    preprocess: normalize.Normalization, metrics: Any) -> Problem:
  """The network of the flags (initialised from `key` on `train`'s first image) with its loss
  (`--loss`, with label smoothing), its held-out metrics (`metrics(per_example) -> ([args, ...]
  -> [{...}, ...])`, given the network's `per_example_metrics_fn`: --loss on clean labels, without
  smoothing), `--augment`, the batch error and the compute dtype; `train` becomes the problem's
  training arrays."""
  m = c.model
  loss = lambda outputs, batch: losses.LOSSES[m.loss](outputs, batch["label"], m.label_smoothing)
  model = registry.build(m.nn_architecture, dict(m.options), num_classes=num_classes,
                         activation=m.activation)
  make = _batchnorm_network if registry.BY_NAME[m.nn_architecture].batch_norm else _plain_network
  params, model_state, constants, forward, logits = make(c, model, key, preprocess, train)
  held_out = metrics(per_example_metrics_fn(logits, losses.LOSSES[m.loss], num_classes))
  return Problem(
      forward=forward, output_loss=loss, params=params, train_arrays=train,
      model_state=model_state, constants=constants,
      predict=lambda p, s, k, batch: logits(p, s, k, batch["image"]),
      evaluate=lambda p, s, k: held_out([(p, s, k)])[0], report=report,
      evaluate_each=lambda nets, k: held_out([(p, s, k) for p, s in nets]),
      augment=augment_fn(c.data, preprocess),
      batch_error=lambda outputs, batch: jnp.mean(losses.misclassified(outputs, batch["label"])),
      compute_dtype=precision.DTYPES[m.compute_dtype])


def report(evaluation: dict) -> str:
  """The closing line: "Test error: x" (the reference's), and the validation error if any."""
  line = f"Test error: {evaluation['test_error']}"
  if "validation_error" in evaluation:
    line += f"; validation error: {evaluation['validation_error']}"
  return line


def hold_out(data: images.ImageData, fraction: float, key: jax.Array
             ) -> tuple[images.ImageData, dict]:
  """(the data less its validation split, {"validation": ..., "test": ...}): with `fraction` > 0
  a stratified, seeded share of the training set held out (`data.validation`; its key from the
  run's init key) and the mean image taken again over what remains; else just {"test": ...}."""
  if not fraction:
    return data, {"test": data.test}
  kept, held = validation.stratified_split(data.train["label"], fraction,
                                           validation.validation_key(key))
  train, valid = validation.take(data.train, kept), validation.take(data.train, held)
  data = dataclasses.replace(data, train=train, mean_image=images.mean_image_of(train["image"]))
  return data, {"validation": valid, "test": data.test}


def augment_fn(d: Any, preprocess: normalize.Normalization) -> Any:
  """`(batch, data_key, step) -> batch` with its images augmented as `--augment` says, with the
  step's key `augment.augment_key(data_key, step)`; None for `none`. `d` holds --augment,
  --cutout_size and --brightness_delta (`image_config.ImageData`). Cutout fills with the raw
  value the normalisation maps to 0 (`normalize.Normalization.centre`)."""
  ops = input_spec.parse(d.augment)
  if not ops:
    return None
  settings = augment_pipeline.Augmentation(ops, d.cutout_size, preprocess.centre(),
                                           d.brightness_delta)
  return lambda batch, k, step: {**batch, "image": augment_pipeline.apply(
      settings, batch["image"], augment.augment_key(k, step))}


def per_example_metrics_fn(logits_fn, loss, num_classes: int):
  """`(args, batch) -> {"error", "loss"[, "error_top5"]}`, each [B]: whether logits_fn(*args,
  images) misclassifies each example, its loss (the training loss's formula) and, with at least
  TOP_K_MIN_CLASSES classes, whether the label is outside the top 5 (`losses.not_in_top_k`)."""
  def per_example(args, batch):                     # {[B], [B]}
    logits = logits_fn(*args, batch["image"])
    each = jax.vmap(lambda l, y: loss(l[None], y[None]))(logits, batch["label"])
    out = {"error": losses.misclassified(logits, batch["label"]), "loss": each}
    if num_classes >= TOP_K_MIN_CLASSES:
      out[f"error_top{TOP_K}"] = losses.not_in_top_k(logits, batch["label"], TOP_K)
    return out
  return per_example


def held_out_metrics_fn(per_example, held_out: dict):
  """`[args, ...] -> [{"<split>_error", "<split>_loss"[, "<split>_error_top5"]}, ...]`, one per
  network's args, of every held-out split (validation first): the means of `per_example`
  (`per_example_metrics_fn`) over the split, EVAL_CHUNK images at a time (jitted, compiled once
  per split shape, reused at every evaluation)."""
  metrics = jax.jit(lambda args, arrays: batching.chunked_mean(per_example, args, arrays,
                                                               EVAL_CHUNK))
  return lambda arg_sets: [{f"{name}_{k}": float(v) for name, split in held_out.items()
                            for k, v in metrics(args, split).items()} for args in arg_sets]


def _plain_network(c, model, key, preprocess, train):
  """A network without model state (the MLP, the CNN); the network itself or its linearization at
  w0: (params, model state, constants, forward, logits(p, s, constants, images))."""
  params = jax.jit(model.init)(key, preprocess(train["image"][:1]))
  constants, network = linearize.in_regime(model.apply, params, c.model.regime)

  def logits(p, model_state, constants, image, dtype=jnp.float32):
    return network(p, constants, preprocess(image).astype(dtype), dtype)

  def forward(p, model_state, batch, constants, dtype=jnp.float32):
    return logits(p, model_state, constants, batch["image"], dtype), model_state

  return params, {}, constants, forward, logits


def _batchnorm_network(c, model, key, preprocess, train):
  """A ResNet/WRN with BatchNorm: the model state holds the running statistics, moved once per
  step from the unperturbed pass; measurements use the measured batch's own statistics (train
  mode: the forward pass training differentiates) and never move them; the test error uses
  them. As `_plain_network`."""
  params, batch_stats = jax.jit(lambda k, x: stateful.init_variables(model, k, x))(
      key, preprocess(train["image"][:1]))
  eval_logits = stateful.eval_logits(model, preprocess)

  def forward(p, model_state, batch, constants, dtype=jnp.float32):
    train_forward = stateful.train_forward(model, lambda image: preprocess(image).astype(dtype))
    logits, stats = train_forward(precision.cast_floats(p, dtype), model_state["batch_stats"],
                                  batch["image"])
    return (logits.astype(jnp.float32),
            {"batch_stats": precision.like(stats, model_state["batch_stats"])})

  return (params, {"batch_stats": batch_stats}, {}, forward,
          lambda p, s, constants, image: eval_logits(p, s["batch_stats"], image))
