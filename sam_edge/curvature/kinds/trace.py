"""tr(H) with its standard error, Hutch++ by default (`curvature.trace`): `--measure_trace`.

Records `trace`, `trace_stderr`, `trace_hvps`; drawn as tr(H) ± 2 standard errors in the
curvature figure.
"""

import dataclasses
from typing import Any, Mapping, Optional, Sequence

from sam_edge.curvature.kind import Inputs, Kind
from sam_edge.options import Option
from sam_edge.plots.spec import XLABEL, Panel, Series

METHODS = ("hutch++", "hutchinson")
LEAST_PROBES = {"hutch++": 4, "hutchinson": 2}


@dataclasses.dataclass(frozen=True)
class TraceSettings:
  """Hutch++ or Hutchinson with `probes` HVPs in all (`--trace_probes`)."""
  probes: int = 60
  method: str = "hutch++"
  batch_size: int = 1                # HVPs vectorised together (memory × batch_size)


class Trace(Kind):
  name, seed = "trace", 1
  settings_type = TraceSettings
  record_keys = ("trace", "trace_stderr", "trace_hvps")
  options = (
      Option("measure_trace", False, "Measure tr(H) with its standard error (Hutch++ by default) "
             "at every measurement."),
      Option("trace_probes", 60, "HVPs per trace estimate (Hutch++ spends a third on its "
             "sketch)."),
      Option("trace_method", "hutch++", "Trace estimator: Hutch++ (Meyer et al.) or Hutchinson "
             "with Rademacher probes.", choices=METHODS),
  )

  def settings(self, values: Mapping[str, Any]) -> Optional[TraceSettings]:
    if not values["measure_trace"]:
      return None
    return TraceSettings(probes=values["trace_probes"], method=values["trace_method"])

  def problems(self, settings: TraceSettings) -> list[str]:
    if settings.method not in METHODS:
      return [f"--trace_method: unknown trace method {settings.method!r}: expected one of "
              f"{METHODS}"]
    least = LEAST_PROBES[settings.method]
    if settings.probes < least:
      return [f"--trace_probes: {settings.method} needs at least {least} trace probes, got "
              f"{settings.probes}"]
    return []

  def size_problems(self, settings: TraceSettings, num_params: int) -> list[str]:
    sketch = settings.probes // 3
    if settings.method == "hutch++" and sketch > num_params:
      return [f"--trace_probes={settings.probes}: the Hutch++ sketch of {sketch} exceeds the "
              f"{num_params} parameters"]
    return []

  def measure(self, inputs: Inputs, settings: TraceSettings, key: Any, state: Any
              ) -> tuple[dict, Any]:
    from sam_edge.curvature import hvp, trace  # pylint: disable=import-outside-toplevel
    objective, params, batch = inputs.objective, inputs.params, inputs.batch
    matvec, flat, _ = hvp.operator(objective.loss, params, batch)
    return trace.estimate_trace(matvec, flat.shape[0], flat.dtype, key,
                                num_probes=settings.probes, method=settings.method,
                                batch_size=settings.batch_size), state

  def line(self, record: Mapping[str, Any]) -> str:
    return f" | tr(H) {record['trace']:.6g} ± {record['trace_stderr']:.2g}"

  def scalars(self, record: Mapping[str, Any]) -> dict[str, Any]:
    return {"curvature/trace": record["trace"], "curvature/trace_stderr": record["trace_stderr"]}

  def panels(self, records: Sequence[Mapping[str, Any]], title: str) -> list[Panel]:
    steps = [r["step"] for r in records]
    band = {"color": "tab:blue", "linestyle": ":", "linewidth": 0.8}
    return [Panel(f"{title}: trace", XLABEL, "tr(H)", [
        Series("tr(H)", steps, [r["trace"] for r in records], {"color": "tab:blue"}),
        Series("± 2 standard errors", steps,
               [r["trace"] - 2 * r["trace_stderr"] for r in records], band),
        Series("_nolegend_", steps, [r["trace"] + 2 * r["trace_stderr"] for r in records],
               band)])]


TRACE = Trace()
