"""The curvature kinds beyond λ1, and everything the rest of the project asks of them.

`KINDS` lists the kinds (`kind.Kind`, one module each in `kinds/`); a requested set is a tuple of
(name, settings) pairs in registry order (`requested(flags)`). The command line declares every
kind's options and checks them (`options`, `problems`), a measurement runs the requested kinds
(`init_states`, `measure_curvature`), the measurement line and TensorBoard read their parts
(`line`, `scalars`), and the run's figures read `KINDS` (`plots.run.figure_outputs`). No jax
here.
"""

from typing import Any, Mapping

from sam_edge import options
from sam_edge.curvature.kind import Inputs, Kind
from sam_edge.curvature.kinds import (
    batch_sharpness,
    density,
    gauss_newton,
    min_eigenvalue,
    per_layer,
    self_stabilization,
    trace,
)

KINDS: tuple[Kind, ...] = (trace.TRACE, density.DENSITY, per_layer.PER_LAYER,
                           min_eigenvalue.MIN_EIGENVALUE, gauss_newton.GAUSS_NEWTON,
                           batch_sharpness.BATCH_SHARPNESS, self_stabilization.SELF_STABILIZATION)
BY_NAME: dict[str, Kind] = {k.name: k for k in KINDS}
PRECISION = "highest"
Requested = tuple[tuple[str, Any], ...]


def all_options() -> list[options.Option]:
  """Every kind's flags, each once."""
  return options.unique([o for k in KINDS for o in k.options])


def requested(values: Mapping[str, Any]) -> Requested:
  """The kinds the run's values ({flag: value}) ask for, with their settings, in registry order."""
  found = ((k.name, k.settings(values)) for k in KINDS)
  return tuple((name, s) for name, s in found if s is not None)


def problems(kinds: Requested) -> list[str]:
  """One line per requested kind that cannot run with its settings (unknown kinds included)."""
  found = []
  for name, settings in kinds:
    if name not in BY_NAME:
      found.append(f"unknown curvature measurement {name!r}: expected one of {list(BY_NAME)}")
    elif not isinstance(settings, BY_NAME[name].settings_type):
      found.append(f"{name} needs {BY_NAME[name].settings_type.__name__}, got "
                   f"{type(settings).__name__}")
    else:
      found += BY_NAME[name].problems(settings)
  return found


def size_problems(kinds: Requested, num_params: int) -> list[str]:
  """One line per setting that needs more dimensions than the model has."""
  return [line for name, s in kinds for line in BY_NAME[name].size_problems(s, num_params)]


def _check(kinds: Requested) -> None:
  found = problems(kinds)
  if found:
    raise ValueError("; ".join(found))


def init_states(kinds: Requested, params: Any) -> dict[str, Any]:
  """The first state of every requested kind (ValueError for settings that cannot run)."""
  _check(kinds)
  return {name: BY_NAME[name].init_state(s, params) for name, s in kinds}


def measure_curvature(inputs: Inputs, kinds: Requested, key: Any,
                      states: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
  """Runs every requested kind on `inputs` (`kind.Inputs`) at matmul precision "highest", each
  with `fold_in(key, kind.seed)`; returns the merged record and the new states (pure and
  jittable)."""
  import jax  # pylint: disable=import-outside-toplevel
  _check(kinds)
  record, new_states = {}, {}
  with jax.default_matmul_precision(PRECISION):
    for name, s in kinds:
      kind = BY_NAME[name]
      out, new_states[name] = kind.measure(inputs, s, jax.random.fold_in(key, kind.seed),
                                           states[name])
      record.update(out)
  return record, new_states


def _holds(kind: Kind, record: Mapping[str, Any]) -> bool:
  return all(key in record for key in kind.record_keys)


def line(record: Mapping[str, Any]) -> str:
  """The kinds' parts of a measurement's printed line."""
  return "".join(k.line(record) for k in KINDS if _holds(k, record))


def scalars(record: Mapping[str, Any]) -> dict[str, Any]:
  """The kinds' TensorBoard scalars of a host record."""
  out: dict[str, Any] = {}
  for k in KINDS:
    if _holds(k, record):
      out.update(k.scalars(record))
  return out
