"""The image task's input-pipeline flags (`--data_pipeline` and the stream's own), their
defaults and checks, without loading anything (`data.pipeline_choice` decides; `image_stream`
builds the streamed problem).

A streamed run measures on a fixed set: --measure_examples defaults to --batch_size there (a
stream holds no training array to draw a measured batch from), a seeded draw of that many
training examples held on the device (`stream_order.measured_indices`).
"""

from typing import Any, Optional

from sam_edge import options
from sam_edge.data import image_specs, pipeline_choice, stream_sources
from sam_edge.options import Option
from sam_edge.tasks.task import Values, at_least, check

OPTIONS = (     # the pipeline's flags (under the image task's --help topic data)
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


def _streams(v: Values) -> bool:
  return streams(v["dataset"], v["data_pipeline"], v["data_memory_cap_gb"])


def resolve_defaults(v: Values) -> dict[str, Any]:
  """A streamed run's defaults: --measure_examples = --batch_size, --image_size the dataset's
  (`image_specs.STREAMED`); returns {flag: value} of those to set."""
  if not _streams(v):
    return {}
  out = {}
  if v["measure_examples"] is None and v["batch_size"] >= 1:
    out["measure_examples"] = v["batch_size"]
  spec = image_specs.STREAMED.get(v["dataset"])
  if spec is not None and v["image_size"] is None:
    out["image_size"] = spec.image_size
  return out


def problems(v: Values) -> list[str]:
  """The flags a stream does not combine with (none while a pipeline flag is out of range: its
  declared check says so)."""
  if options.problems(OPTIONS, v.get):
    return []
  if v["data_pipeline"] == "memory" and image_specs.in_memory_problem(v["dataset"]):
    return [image_specs.in_memory_problem(v["dataset"])]
  if not _streams(v):
    return [] if v["image_size"] is None else [
        "--image_size applies to the stream only (--data_pipeline=stream, or auto above "
        "--data_memory_cap_gb)"]
  why = {"--validation_fraction": v["validation_fraction"] > 0,
         "--label_noise": v["label_noise"] > 0,
         "--batch_order=reference": v["batch_order"] == "reference",
         "--track_every_step": v["track_every_step"]}
  return [f"{name} is not supported with the streamed input pipeline "
          "(--data_pipeline=stream)" for name, bad in why.items() if bad]
