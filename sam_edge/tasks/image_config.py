"""The image task's part of a run's config: its data and its network, typed and frozen, each field
the value of the flag of its name (`task.section`). `image_problem.build` reads nothing else.

    c = image_config.of(values)          # values: {flag: value}, e.g. a raw pickle's "config"
    c.data.dataset, c.model.nn_architecture, dict(c.model.options)
"""

import dataclasses
from typing import Any, Optional

from sam_edge.models import registry
from sam_edge.tasks.task import TaskConfig, Values, section


@dataclasses.dataclass(frozen=True)
class ImageData:
  """Which images, where they are, and how they are cut, ordered, augmented and normalised."""
  dataset: str
  tfds_data_dir: Optional[str]
  manual_dir: Optional[str]
  batch_size: int
  seed: int
  mini_training_set_num_batches: Optional[int]
  mini_test_set_num_batches: Optional[int]
  validation_fraction: float
  label_noise: float
  batch_order: str
  augment: str
  cutout_size: int
  brightness_delta: float
  normalize: str
  data_pipeline: str
  data_memory_cap_gb: float
  data_workers: int
  image_size: Optional[int]
  measure_examples: Optional[int]


@dataclasses.dataclass(frozen=True)
class ImageModel:
  """The network (`options`: its own options' values, `models.registry`), its loss and regime."""
  nn_architecture: str
  options: tuple[tuple[str, Any], ...]
  activation: str
  loss: str
  label_smoothing: float
  regime: str
  compute_dtype: str


ImageConfig = TaskConfig[ImageData, ImageModel]


def of(values: Values) -> ImageConfig:
  """The image task's part of the config of a run whose flags have `values`."""
  arch = registry.BY_NAME[values["nn_architecture"]]
  own = tuple((o.name, values[o.name]) for o in arch.options)
  return ImageConfig(section(ImageData, values), section(ImageModel, {**values, "options": own}))
