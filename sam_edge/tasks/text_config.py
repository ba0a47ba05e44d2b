"""The transformer task's part of a run's config: its corpus and its network, typed and frozen,
each field the value of the flag of its name (`task.section`)."""

import dataclasses
from typing import Optional

from sam_edge.tasks.task import TaskConfig, Values, section


@dataclasses.dataclass(frozen=True)
class TextData:
  """The corpus, its splits, windows and batches."""
  training_data: str
  test_data: Optional[str]
  test_fraction: float
  validation_fraction: float
  sequence_length: int
  batch_size: int
  test_batches: str
  batch_order: str
  seed: int


@dataclasses.dataclass(frozen=True)
class TextModel:
  """The transformer's shape, its regime and compute dtype."""
  num_layers: int
  num_heads: int
  key_size: int
  model_size: int
  regime: str
  compute_dtype: str


TextConfig = TaskConfig[TextData, TextModel]


def of(values: Values) -> TextConfig:
  """The transformer task's part of the config of a run whose flags have `values`."""
  return TextConfig(section(TextData, values), section(TextModel, values))
