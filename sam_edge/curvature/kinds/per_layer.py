"""Per-layer sharpness (`curvature.blocks`): the top eigenvalue (and, with --measure_trace, the
trace) of each module's diagonal Hessian block H_bb, `--measure_per_layer`.

Records `per_layer` = {block name: {`eigenvalue`, `residual`[, `trace`, `trace_stderr`]}} (block
order: `blocks.block_partition(params).names`) and `per_layer_hvps`. Its Lanczos takes the top
eigenvalue's cap and tolerance (`--lanczos_max_steps`, `--lanczos_tol`).
"""

import dataclasses
from typing import Any, Mapping, Optional, Sequence

from sam_edge.curvature.kind import Inputs, Kind
from sam_edge.options import Option
from sam_edge.plots.spec import XLABEL, Panel, Series, colour


@dataclasses.dataclass(frozen=True)
class PerLayerSettings:
  """Lanczos per block (as the top-eigenvalue solver) and, if trace_probes > 0, block traces."""
  max_steps: int = 20
  tol: float = 1e-4
  min_steps: int = 3
  granularity: str = "module"        # module | leaf
  trace_probes: int = 0              # 0: no block traces
  batch_size: int = 1


class PerLayer(Kind):
  name, seed = "per_layer", 3
  settings_type = PerLayerSettings
  record_keys = ("per_layer", "per_layer_hvps")
  options = (Option("measure_per_layer", False, "Measure the top eigenvalue (and, with "
                    "--measure_trace, the trace) of each module's diagonal Hessian block."),)

  def settings(self, values: Mapping[str, Any]) -> Optional[PerLayerSettings]:
    if not values["measure_per_layer"]:
      return None
    return PerLayerSettings(max_steps=values["lanczos_max_steps"], tol=values["lanczos_tol"],
                            min_steps=min(3, values["lanczos_max_steps"]),
                            trace_probes=values["trace_probes"] if values["measure_trace"] else 0)

  def problems(self, settings: PerLayerSettings) -> list[str]:
    if settings.trace_probes == 1 or settings.trace_probes < 0:
      return [f"--trace_probes: per-layer trace probes must be 0 (none) or >= 2, got "
              f"{settings.trace_probes}"]
    if settings.max_steps < 1 or not settings.tol > 0:
      return [f"--measure_per_layer needs max_steps >= 1 and tol > 0, got {settings.max_steps} "
              f"and {settings.tol}"]
    return []

  def measure(self, inputs: Inputs, settings: PerLayerSettings, key: Any, state: Any
              ) -> tuple[dict, Any]:
    import jax  # pylint: disable=import-outside-toplevel
    import jax.numpy as jnp  # pylint: disable=import-outside-toplevel

    from sam_edge.curvature import blocks, hvp  # pylint: disable=import-outside-toplevel
    objective, params, batch = inputs.objective, inputs.params, inputs.batch
    matvec, flat, _ = hvp.operator(objective.loss, params, batch)
    n, dtype = flat.shape[0], flat.dtype
    partition = blocks.block_partition(params, settings.granularity)
    eig_key, trace_key = jax.random.split(key)
    tops = blocks.block_top_eigenvalues(matvec, n, dtype, eig_key, partition,
                                        max_steps=settings.max_steps, tol=settings.tol,
                                        min_steps=settings.min_steps)
    per_block = {"eigenvalue": tops["eigenvalue"], "residual": tops["residual"]}
    hvps = jnp.sum(tops["hvps"])
    if settings.trace_probes:
      per_block.update(blocks.block_traces(matvec, n, dtype, trace_key, partition,
                                           num_probes=settings.trace_probes,
                                           batch_size=settings.batch_size))
      hvps = hvps + settings.trace_probes
    layers = {name: {field: values[i] for field, values in per_block.items()}
              for i, name in enumerate(partition.names)}
    return {"per_layer": layers, "per_layer_hvps": hvps}, state

  def line(self, record: Mapping[str, Any]) -> str:
    layers = record["per_layer"]
    top = max(layers, key=lambda name: layers[name]["eigenvalue"])
    return f" | sharpest layer {top} {layers[top]['eigenvalue']:.6g}"

  def scalars(self, record: Mapping[str, Any]) -> dict[str, Any]:
    return {f"per_layer/{name}": block.get("eigenvalue")
            for name, block in record["per_layer"].items()}

  def panels(self, records: Sequence[Mapping[str, Any]], title: str) -> list[Panel]:
    names = list(records[-1]["per_layer"])
    series = [Series(name, [r["step"] for r in records if name in r["per_layer"]],
                     [r["per_layer"][name]["eigenvalue"] for r in records
                      if name in r["per_layer"]], {"color": colour(i, len(names))})
              for i, name in enumerate(names)]
    return [Panel(f"{title}: per-layer sharpness", XLABEL,
                  "top eigenvalue of the layer's Hessian block", series)]


PER_LAYER = PerLayer()
