"""The image-classification task as the command line sees it: its flags, their checks (found
without loading anything), its defaults and title. `image_problem.build` loads the data and
builds the model inside the run; `image_stream.build` streams it (`--data_pipeline`, decided by
`data.pipeline_choice`).

A streamed run measures on a fixed set: --measure_examples defaults to --batch_size there (a
stream holds no training array to draw a measured batch from), a seeded draw of that many
training examples held on the device (`stream_order.measured_indices`).
"""

import os
from typing import Any, Optional

from sam_edge import options, records
from sam_edge.data import image_specs, input_spec, pipeline_choice, stream_sources, validation
from sam_edge.models import registry
from sam_edge.options import Option
from sam_edge.tasks import image_config
from sam_edge.tasks.task import Defaults, Task, Values, at_least, check

RESNET_BATCH_SIZE = 128
BATCH_NORM = [a.name for a in registry.ARCHITECTURES if a.batch_norm]

PIPELINE_OPTIONS = (     # the input pipeline's flags (under the --help topic data)
    Option("data_pipeline", "auto",
           "memory: read each split whole into host memory as uint8 and gather batches on the "
           "device; stream: read, decode and augment the records batch by batch on the host "
           "(grain over TFDS's ArrayRecord files; the order a pure function of (seed, step), a "
           "fresh shuffle every epoch, each process reading its slice of every batch); auto: "
           "memory unless the training split decoded exceeds --data_memory_cap_gb.",
           choices=tuple(pipeline_choice.PIPELINES)),
    Option("data_memory_cap_gb", pipeline_choice.DEFAULT_CAP_GB,
           "With --data_pipeline=auto: the largest training split (N·H·W·C bytes decoded, in "
           "10⁹ bytes) read into memory; a larger one is streamed.", type=float,
           check=check(lambda x: x > 0, "must be > 0")),
    Option("data_workers", pipeline_choice.DEFAULT_WORKERS,
           "Stream: worker processes decoding and augmenting batches (grain's mp_prefetch); 0 "
           "decodes in the training process.", type=int, check=at_least(0)),
    Option("image_size", None,
           "Stream: train on S×S random-resized crops (Inception-style, scale (0.08, 1), ratio "
           "(3/4, 4/3)) with a horizontal flip, drawn on the host from (seed, example position), "
           "and evaluate on the centre S×S crop (crop fraction 0.875); default: the images as "
           "stored (imagenet2012: 224).", type=int, check=at_least(1)),
)
DATA_OPTIONS = (
    Option("dataset", "mnist", f"{', '.join(image_specs.SUPPORTED)} (from TFDS); streamed only: "
           f"{', '.join(image_specs.STREAMED)}, or any TFDS image dataset with "
           "--data_pipeline=stream."),
    Option("tfds_data_dir", None, "Where TFDS keeps prepared datasets (its default if unset).",
           type=str),
    Option("manual_dir", None, "A folder with the dataset's original files, for offline "
           "preparation (e.g. the four IDX .gz files of MNIST).", type=str),
    Option("mini_training_set_num_batches", None,
           "Keep only the first N batches of the training set.", type=int, check=at_least(1)),
    Option("mini_test_set_num_batches", None,
           "Keep only the first N batches (of --batch_size) of the test set.", type=int,
           check=at_least(1)),
    Option("augment", input_spec.NONE,
           "Training-batch augmentation, on device, a pure function of (seed, step): "
           "none, or a comma list of autoaugment, flip, crop, brightness, cutout, "
           "applied in that order (the SAM papers') whatever the order written; "
           "flip_crop is flip,crop. On the raw uint8 image, per example: "
           "autoaugment is AutoAugment's CIFAR-10 policy (25 sub-policies); flip a "
           "horizontal flip with probability 1/2; crop a random crop after 4-pixel "
           "zero padding; brightness adds δ ~ U[-d, d) on the [0, 1] scale and "
           "clips (--brightness_delta); cutout sets a square of side --cutout_size, "
           "centred at a random pixel and clipped at the border, to the raw value "
           "that --normalize maps to 0. In a sweep write the commas as \\, "
           "(--augment=flip\\,crop). Measurements use the batches un-augmented."),
    Option("cutout_size", input_spec.CUTOUT_SIZE, "Side S of --augment=cutout's square, in "
           "pixels, at most the image side (16: the SAM paper's)."),
    Option("brightness_delta", input_spec.BRIGHTNESS_DELTA, "d ∈ [0, 1] of --augment=brightness: "
           "each image's shift δ ~ U[-d, d) on the [0, 1] pixel scale (0.5: SAM-TF's "
           "max_delta)."),
    Option("normalize", input_spec.NORMALIZE_METHODS[0],
           "The network's inputs from the raw pixels x, on device: mean_image "
           "x/256 − the mean training image (the reference's); per_channel "
           "(x/255 − μ_c)/σ_c with each channel's mean and standard deviation over "
           "the training pixels (the SAM paper's); none x/255.",
           choices=tuple(input_spec.NORMALIZE_METHODS)),
    Option("label_noise", 0.0, "Fraction p of the training labels replaced by a label drawn "
           "uniformly among the other classes (exactly round(pN), fixed by the seed); test "
           "labels stay clean.", check=options.interval(0, 1)),
    *PIPELINE_OPTIONS,
)
MODEL_OPTIONS = (
    Option("nn_architecture", "MLP", f"One of {', '.join(registry.NAMES)} (with BatchNorm: "
           f"{', '.join(BATCH_NORM)})."),
    *registry.all_options(),
    Option("activation", "relu", "Activation of the MLP's hidden layers, the CNN's convolutions "
           "and the residual networks.", choices=tuple(registry.ACTIVATIONS)),
    Option("loss", "squared_error", "; ".join(
        f"{name}: {formula}" for name, formula in registry.LOSS_FORMULAS.items()) + ".",
           choices=tuple(registry.LOSS_FORMULAS)),
    Option("label_smoothing", 0.0, "s: targets (1 − s)·onehot + s/C, for every --loss.",
           check=options.interval(0, 1)),
)


def resolved(dataset: str, pipeline: str, cap_gb: float) -> tuple[str, Optional[str]]:
  """(memory or stream, why auto streams or None) of --dataset, --data_pipeline and
  --data_memory_cap_gb (`pipeline_choice.choose`), the training split's size the bytes decoded
  (`stream_sources.decoded_bytes`) by the tables of `image_specs` (TFDS's dataset info), ∞ for
  a dataset they do not know."""
  spec = image_specs.SPECS.get(dataset)
  size = (float("inf") if spec is None
          else stream_sources.decoded_bytes(spec.train_size, spec.image_shape))
  return pipeline_choice.choose(pipeline, size, cap_gb, dataset)


def streams(dataset: str, pipeline: str, cap_gb: float) -> bool:
  """Whether these flags (`resolved`'s) stream the training set."""
  return dataset in image_specs.STREAMED or resolved(dataset, pipeline, cap_gb)[0] == "stream"


def _stream_defaults(v: Values) -> dict[str, Any]:
  """A streamed run's defaults: --measure_examples = --batch_size, --image_size the dataset's
  (`image_specs.STREAMED`); returns {flag: value} of those to set."""
  if not streams(v["dataset"], v["data_pipeline"], v["data_memory_cap_gb"]):
    return {}
  out = {}
  if v["measure_examples"] is None and v["batch_size"] >= 1:
    out["measure_examples"] = v["batch_size"]
  spec = image_specs.STREAMED.get(v["dataset"])
  if spec is not None and v["image_size"] is None:
    out["image_size"] = spec.image_size
  return out


def _pipeline_problems(v: Values) -> list[str]:
  """The flags a stream does not combine with (none while a pipeline flag is out of range: its
  declared check says so)."""
  if options.problems(PIPELINE_OPTIONS, v.get):
    return []
  if v["data_pipeline"] == "memory" and image_specs.in_memory_problem(v["dataset"]):
    return [image_specs.in_memory_problem(v["dataset"])]
  if not streams(v["dataset"], v["data_pipeline"], v["data_memory_cap_gb"]):
    return [] if v["image_size"] is None else [
        "--image_size applies to the stream only (--data_pipeline=stream, or auto above "
        "--data_memory_cap_gb)"]
  why = {"--validation_fraction": v["validation_fraction"] > 0,
         "--label_noise": v["label_noise"] > 0,
         "--batch_order=reference": v["batch_order"] == "reference",
         "--track_every_step": v["track_every_step"]}
  return [f"{name} is not supported with the streamed input pipeline "
          "(--data_pipeline=stream)" for name, bad in why.items() if bad]


def resolve_defaults(v: Values, given: frozenset) -> dict[str, Any]:
  """The default --batch_size, 60000, means "the whole MNIST training set": full batch on any
  dataset (what remains of it after --validation_fraction); for the residual networks (whose
  BatchNorm activations of a full batch would not fit a device) the default is
  RESNET_BATCH_SIZE. A streamed run's own defaults: `_stream_defaults`. Returns
  {flag: value} of the defaults to set, given the values `v` and the flags `given`."""
  out = {}
  if "batch_size" not in given:
    if v["nn_architecture"] in BATCH_NORM:
      out["batch_size"] = RESNET_BATCH_SIZE
    elif v["dataset"] in image_specs.TRAIN_SIZES and 0 <= v["validation_fraction"] < 1:
      n = image_specs.TRAIN_SIZES[v["dataset"]]
      out["batch_size"] = n - validation.num_held_out(n, v["validation_fraction"])
  return {**out, **_stream_defaults({**v, **out})}


def train_examples(v: Values) -> Optional[int]:
  """The training examples a run of these flags trains on: the dataset's declared size, less what
  the mini set drops (`images.num_kept`) and the validation split holds out; None for a dataset
  of unknown size."""
  total = image_specs.TRAIN_SIZES.get(v["dataset"])
  if total is None or not 0 <= v["validation_fraction"] < 1:     # the latter: a problem of its own
    return None
  mini = v["mini_training_set_num_batches"]
  kept = total if mini is None else min(total, mini * v["batch_size"])
  return kept - validation.num_held_out(kept, v["validation_fraction"])


def _image_side(v: Values) -> Optional[int]:
  """The side of the square images the network sees: the stream's --image_size, else the
  dataset's (None when its images vary in size and no size is given)."""
  spec = image_specs.SPECS.get(v["dataset"])
  return v["image_size"] or (spec.image_shape[0] if spec else None)


def _model_problems(v: Values, given: frozenset) -> list[str]:
  """The network's: its name, another network's options given with it, its fit to the images
  (`registry.Architecture.fit`), BatchNorm's and SAM-ON's limits (each network's options are
  checked by their declared checks)."""
  arch = registry.BY_NAME.get(v["nn_architecture"])
  if arch is None:
    return [f"--nn_architecture={v['nn_architecture']} is not supported; use one of "
            f"{', '.join(registry.NAMES)}"]
  p = [f"--{o.name} is an option of {other.name}, not of --nn_architecture={arch.name}"
       for other in registry.ARCHITECTURES if other != arch and not other.reference_flags
       for o in other.options if o.name in given]
  side = _image_side(v)
  if side is not None and not options.problems(arch.options, v.get):
    p += arch.fit({o.name: v[o.name] for o in arch.options}, side,
                  f"the {side}x{side} images of {v['dataset']}")
  if arch.batch_norm and v["measure_chunk"]:
    p.append(f"--measure_chunk is not supported with --nn_architecture={arch.name}: "
             "BatchNorm's batch statistics couple the examples of the measured batch")
  if arch.batch_norm and v["regime"] == "linearized":
    p.append(f"--regime=linearized is not supported with --nn_architecture={arch.name} "
             "(BatchNorm's batch statistics make the network no function of one example)")
  if v["sam_params"] == "normalization" and arch.name == "MLP":
    p.append("--sam_params=normalization perturbs the normalisation layers, and the MLP has none "
             f"(use one of {', '.join(a for a in registry.NAMES if a != 'MLP')})")
  return p


def title(c: image_config.ImageConfig) -> str:
  """The run's title: dataset and network, with the network's options unless they are the
  reference's."""
  arch = registry.BY_NAME[c.model.nn_architecture]
  shown = [f"{name.split('_', 1)[1]} {value}" for name, value in c.model.options]
  return f"{c.data.dataset} {arch.name}" + (f" ({', '.join(shown)})"
                                            if shown and not arch.reference_flags else "")


def _folder_problems(v: Values) -> list[str]:
  p = []
  for name, must_exist in (("tfds_data_dir", False), ("manual_dir", True)):
    path = v[name]
    reason = records.folder_problem(path, must_exist=must_exist) if path else None
    if reason:
      p.append(f"--{name}={path}: {reason}")
  if v["manual_dir"] and not p and v["dataset"] in image_specs.SPECS:
    missing = [n for n in image_specs.expected_manual_files(v["dataset"])
               if not os.path.isfile(os.path.join(v["manual_dir"], n))]
    if missing:
      p.append(f"--manual_dir={v['manual_dir']} lacks the {v['dataset']} files "
               f"{', '.join(missing)}")
  return p


def problems(v: Values, given: frozenset) -> list[str]:
  """Every problem with the image flags, found without loading anything, but the ranges that
  their options' declared checks hold."""
  p, dataset = [], v["dataset"]
  if dataset not in image_specs.SUPPORTED and not (dataset in image_specs.STREAMED
                                                   or v["data_pipeline"] == "stream"):
    p.append(f"--dataset={dataset} is not supported; use one of "
             f"{', '.join(image_specs.SUPPORTED)}")
  p += _model_problems(v, given) + _pipeline_problems(v)
  if dataset in image_specs.TRAIN_SIZES and v["batch_size"] > image_specs.TRAIN_SIZES[dataset]:
    p.append(f"--batch_size={v['batch_size']} is larger than the "
             f"{image_specs.TRAIN_SIZES[dataset]} training examples of {dataset}")
  p += input_spec.problems(v["augment"], v["cutout_size"], v["brightness_delta"],
                           _image_side(v), v["dataset"])
  if (v["track_every_step"] and not input_spec.list_problems(v["augment"])
      and input_spec.parse(v["augment"])):
    p.append(f"--track_every_step is not supported with --augment={v['augment']}: it follows the "
             "Hessian of the step's own (augmented) batch, which measurements do not see")
  return p + _folder_problems(v)


def build(c: image_config.ImageConfig, key: Any) -> Any:
  """The Problem (`image_problem.build`; streamed, `image_stream.build`, after the line that says
  why auto streams) of the task's part of the config: loads the data (or opens its stream),
  builds the model from `key`."""
  d = c.data
  if streams(d.dataset, d.data_pipeline, d.data_memory_cap_gb):
    from sam_edge.tasks import image_stream  # pylint: disable=import-outside-toplevel
    why = resolved(d.dataset, d.data_pipeline, d.data_memory_cap_gb)[1]
    if why:
      print(why)
    return image_stream.build(c, key)
  from sam_edge.tasks import image_problem  # pylint: disable=import-outside-toplevel
  return image_problem.build(c, key)


TASK = Task(prog="image_classification",
            defaults=Defaults(step_size=0.01, batch_size=60000, time_limit_in_hours=4.0,
                              hessian_check_gap=0.25, batch_order="shuffled"),
            options=options.topics(data=DATA_OPTIONS, model=MODEL_OPTIONS), problems=problems,
            title=title, config=image_config.of, build=build,
            resolve_defaults=resolve_defaults, train_examples=train_examples)
