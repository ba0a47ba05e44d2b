"""An experiment as a command line sees it: its program name, its defaults for the shared flags,
its own flags and checks, its title, and how it builds its `run.problem.Problem`.

A task module (`image_task`, `text_task`) imports neither jax nor TensorFlow: defining its flags
and checking them is fast, and only `build` (called inside the run) loads data and models.
"""

import dataclasses
from typing import Any, Callable, Mapping, Optional

Values = Mapping[str, Any]        # {flag: value}: a parsed command line, or a saved run's config


def section(cls: type, values: Values) -> Any:
  """The frozen dataclass `cls` whose every field is the value of the flag of its name."""
  return cls(**{f.name: values[f.name] for f in dataclasses.fields(cls)})


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
  """One experiment (module doc). `problems(flags)` lists the task's own flag problems, one line
  each; `input_problems(flags)` reads the input files (the corpus), once the flags are sound;
  `resolve_defaults(flags)` fills in defaults that depend on other flags; `config(values)` is the
  task's typed part of a run's config (its data and model) from the flags' values {flag: value};
  `build(config, key)` returns the Problem of that part, initialised from `key`."""
  prog: str
  defaults: Defaults
  define_flags: Callable[[Any], None]
  problems: Callable[[Any], list[str]]
  title: Callable[[Any], str]       # of the task's part of the config
  config: Callable[[Values], Any]
  build: Callable[[Any, Any], Any]
  resolve_defaults: Callable[[Any], None] = lambda flags: None
  input_problems: Callable[[Any], list[str]] = lambda flags: []
  train_examples: Callable[[Any], Optional[int]] = lambda flags: None
