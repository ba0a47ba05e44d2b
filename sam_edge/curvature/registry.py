"""The curvature kinds beyond λ1, and everything the rest of the project asks of them.

`KINDS` lists the kinds (`kind.Kind`, one module each in `kinds/`); a requested set is a tuple of
(name, settings) pairs in registry order (`requested(flags)`). The command line declares every
kind's options and checks them (`options`, `problems`), a measurement runs the requested kinds
(`init_states`, `measure_curvature`), the measurement line, TensorBoard and the figures read
their parts (`line`, `scalars`, `figure_outputs`, which also lists the run's own figures). No jax
here.
"""

from typing import Any, Mapping, Sequence

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
from sam_edge.plots import run as run_figures
from sam_edge.plots.spec import FigureOutput, Panel, records_of

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


def _holding(kind: Kind, records: Sequence[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
  return [r for r in records if all(key in r for key in kind.record_keys)]


def line(record: Mapping[str, Any]) -> str:
  """The kinds' parts of a measurement's printed line."""
  return "".join(k.line(record) for k in KINDS if _holding(k, [record]))


def scalars(record: Mapping[str, Any]) -> dict[str, Any]:
  """The kinds' TensorBoard scalars of a host record."""
  out: dict[str, Any] = {}
  for k in KINDS:
    if _holding(k, [record]):
      out.update(k.scalars(record))
  return out


def curvature_panels(raw: Mapping[str, Any], title: str) -> list[Panel]:
  """The panels of the curvature figure: each kind's, from the records holding its keys (none
  when nothing was measured)."""
  recs = records_of(raw)
  return [p for k in KINDS if _holding(k, recs) for p in k.panels(_holding(k, recs), title)]


CURVATURE_FIGURE = FigureOutput(
    "curvature_output", "/tmp/curvature.pdf", "PDF: tr(H) ± its standard error, λ_min, the "
    "per-layer top eigenvalues and the other curvature kinds' panels; written when one of them is "
    "measured", curvature_panels)


def with_kind_series(out: FigureOutput) -> FigureOutput:
  """An eigenvalue figure with the kinds' curves (`Kind.eigen_series`, e.g. the batch sharpness)
  added to its panel beside λ1 and the method's edge."""
  def panels(raw: Mapping[str, Any], title: str) -> list[Panel]:
    found = out.panels(raw, title)
    recs = records_of(raw)
    extra = [s for k in KINDS for s in k.eigen_series(_holding(k, recs))]
    if not found or not extra:
      return found
    return [found[0]._replace(series=list(found[0].series) + extra)] + found[1:]
  return out._replace(panels=panels)


EIGENVALUE_FIGURES = ("eigs_curve_output", "eigs_se_only_output")


def figure_outputs() -> tuple[FigureOutput, ...]:
  """Every PDF a run can write: the run's own figures (`plots.run.FIGURES`, the eigenvalue ones
  with the kinds' curves), the curvature figure and the kinds' own (e.g. the spectral
  density)."""
  own = tuple(with_kind_series(f) if f.flag in EIGENVALUE_FIGURES else f
              for f in run_figures.FIGURES)
  return own + (CURVATURE_FIGURE,) + tuple(f for k in KINDS for f in k.figures)

