"""An experiment as a command line sees it: its program name, its defaults for the shared flags,
its own flags and checks, its title, and how it builds its `run.problem.Problem`.

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
  """A task's part of a run's config: its data and its model (typed per task, e.g.
  `image_config.ImageConfig`)."""
  data: Data
  model: Model


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
