"""An experiment as a command line sees it: its program name, its defaults for the shared flags,
its own flags and checks, its title, and how it builds its `run.problem.Problem` from its typed,
frozen part of a run's config (`TaskConfig`: its data and its model, each field the value of the
flag of its name, `section`; `ImageConfig`, `TextConfig`), which is all its problem reads.

A task module (`image_task`, `text_task`) imports neither jax, TensorFlow nor absl: declaring its
flags and checking their values is fast, and only `build` (called inside the run) loads data and
models.
"""

import dataclasses
from typing import Any, Callable, Generic, Mapping, Optional, TypeVar

from sam_edge.options import Check, Option

Values = Mapping[str, Any]        # {flag: value}: a parsed command line, or a saved run's config


Data, Model = TypeVar("Data"), TypeVar("Model")


def section(cls: type, values: Values) -> Any:
  """The frozen dataclass `cls` whose every field is the value of the flag of its name."""
  return cls(**{f.name: values[f.name] for f in dataclasses.fields(cls)})


def check(ok: Callable[[Any], bool], reason: str) -> Check:
  """An option's declared check (`options.Option.check`): `reason` for a value `ok` refuses."""
  return lambda x: None if ok(x) else reason


def at_least(low: int) -> Check:
  """x ≥ low."""
  return check(lambda x: x >= low, f"must be at least {low}")


@dataclasses.dataclass(frozen=True)
class TaskConfig(Generic[Data, Model]):
  """A task's part of a run's config: its data and its model (typed per task)."""
  data: Data
  model: Model


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

@dataclasses.dataclass(frozen=True)
class Defaults:
  """The task's defaults of the shared flags (the reference's, per entry point)."""
  step_size: float
  batch_size: int
  time_limit_in_hours: float
  hessian_check_gap: float
  batch_order: str                  # `data.order`: "reference" or "shuffled"


@dataclasses.dataclass(frozen=True)
class Task:
  """One experiment (module doc), seeing the command line as values only ({flag: value}, `given`
  the flags written on it): `options` its own flags by --help topic (`cli` defines them and
  applies their declared checks), `required` those that must be given;
  `resolve_defaults(values, given)` the defaults that depend on other flags ({flag: value} to
  set); `problems(values, given)` the task's own problems between flags, one line each;
  `input_problems(values)` reads the input files (the corpus), once the flags are sound;
  `train_examples(values)` the training set's size when known before loading; `config(values)`
  the task's typed part of a run's config (its data and model); `build(config, key)` the Problem
  of that part, initialised from `key`; `title(config)` its figures' title."""
  prog: str
  defaults: Defaults
  options: tuple[tuple[str, Option], ...]
  title: Callable[[Any], str]
  config: Callable[[Values], Any]
  build: Callable[[Any, Any], Any]
  required: tuple[str, ...] = ()
  problems: Callable[[Values, frozenset], list[str]] = lambda values, given: []
  resolve_defaults: Callable[[Values, frozenset], dict] = lambda values, given: {}
  input_problems: Callable[[Values], list[str]] = lambda values: []
  train_examples: Callable[[Values], Optional[int]] = lambda values: None
