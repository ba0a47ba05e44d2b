"""The image task's input-pipeline flags (`--data_pipeline` and the stream's own), their
defaults and checks, without loading anything (`data.pipeline_choice` decides; `image_stream`
builds the streamed problem).

A streamed run measures on a fixed set: --measure_examples defaults to --batch_size there (a
stream holds no training array to draw a measured batch from), a seeded draw of that many
training examples held on the device (`stream_order.measured_indices`).
"""

from typing import Any, Optional

from absl import flags

from sam_edge.data import image_specs, pipeline_choice, stream_sources


def define_flags(fv: flags.FlagValues) -> None:
  """The pipeline flags on `fv` (the caller opens their --help topic, data)."""
  on = {"flag_values": fv}
  flags.DEFINE_enum("data_pipeline", "auto", list(pipeline_choice.PIPELINES),
                    "memory: read each split whole into host memory as uint8 and gather "
                    "batches on the device; stream: read, decode and augment the records batch "
                    "by batch on the host (grain over TFDS's ArrayRecord files; the order a pure "
                    "function of (seed, step), a fresh shuffle every epoch, each process reading "
                    "its slice of every batch); auto: memory unless the training split decoded "
                    "exceeds --data_memory_cap_gb.", **on)
  flags.DEFINE_float("data_memory_cap_gb", pipeline_choice.DEFAULT_CAP_GB,
                     "With --data_pipeline=auto: the largest training split (N·H·W·C bytes "
                     "decoded, in 10⁹ bytes) read into memory; a larger one is streamed.", **on)
  flags.DEFINE_integer("data_workers", pipeline_choice.DEFAULT_WORKERS,
                       "Stream: worker processes decoding and augmenting batches (grain's "
                       "mp_prefetch); 0 decodes in the training process.", **on)
  flags.DEFINE_integer("image_size", None,
                       "Stream: train on S×S random-resized crops (Inception-style, scale "
                       "(0.08, 1), ratio (3/4, 4/3)) with a horizontal flip, drawn on the host "
                       "from (seed, example position), and evaluate on the centre S×S crop "
                       "(crop fraction 0.875); default: the images as stored (imagenet2012: "
                       "224).", **on)


def decoded_size(dataset: str) -> float:
  """The training split's bytes decoded (`stream_sources.decoded_bytes`) from the tables of
  `image_specs` (TFDS's dataset info); ∞ for a dataset they do not know."""
  spec = image_specs.SPECS.get(dataset)
  if spec is None:
    return float("inf")
  return stream_sources.decoded_bytes(spec.train_size, spec.image_shape)


def resolved(f: Any) -> tuple[str, Optional[str]]:
  """(memory or stream, why auto streams or None) of the flags (`pipeline_choice.choose`)."""
  return pipeline_choice.choose(f.data_pipeline, decoded_size(f.dataset), f.data_memory_cap_gb,
                                f.dataset)


def streams(f: Any) -> bool:
  """Whether these flags stream the training set."""
  return f.dataset in image_specs.STREAMED or resolved(f)[0] == "stream"


def resolve_defaults(f: Any) -> None:
  """A streamed run's defaults: --measure_examples = --batch_size, --image_size the dataset's
  (`image_specs.STREAMED`)."""
  if not streams(f):
    return
  if f.measure_examples is None and f.batch_size >= 1:
    f.measure_examples = f.batch_size
  spec = image_specs.STREAMED.get(f.dataset)
  if spec is not None and f.image_size is None:
    f.image_size = spec.image_size


def _bad_values(f: Any) -> list[str]:
  p = []
  if f.data_workers < 0:
    p.append(f"--data_workers must be at least 0, got {f.data_workers}")
  if not f.data_memory_cap_gb > 0:
    p.append(f"--data_memory_cap_gb must be > 0, got {f.data_memory_cap_gb}")
  if f.image_size is not None and f.image_size < 1:
    p.append(f"--image_size must be at least 1, got {f.image_size}")
  return p


def problems(f: Any) -> list[str]:
  """The pipeline flags' problems, and the flags a stream does not combine with."""
  p = _bad_values(f)
  if p:
    return p
  if f.data_pipeline == "memory" and image_specs.in_memory_problem(f.dataset):
    return [image_specs.in_memory_problem(f.dataset)]
  if not streams(f):
    if f.image_size is not None:
      p.append("--image_size applies to the stream only (--data_pipeline=stream, or auto "
               "above --data_memory_cap_gb)")
    return p
  why = {"--validation_fraction": f.validation_fraction > 0, "--label_noise": f.label_noise > 0,
         "--batch_order=reference": f.batch_order == "reference",
         "--track_every_step": f.track_every_step}
  return p + [f"{name} is not supported with the streamed input pipeline "
              "(--data_pipeline=stream)" for name, bad in why.items() if bad]
