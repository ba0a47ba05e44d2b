"""Batch sharpness (Andreyev and Beneventano, "Edge of Stochastic Stability", 2024):
`--measure_batch_sharpness`, `--batch_sharpness_batches=M`.

For mini-batch SGD the full-batch λ1 settles below 2/η; what settles at 2/η is the curvature of
each mini-batch's Hessian along that batch's own gradient, averaged over batches:

    batch_sharpness        BS = E_B[ g_Bᵀ H_B g_B / ||g_B||² ]     (with its standard error)
    batch_sharpness_ratio       E_B[ g_Bᵀ H_B g_B ] / E_B[ ||g_B||² ]
    batch_sharpness_momentum    E_B[ sᵀ H_B s / sᵀ g_B ]           (heavy ball and Nesterov)

over M fresh batches of the run's batch size, drawn from the training set by the measurement's own
key (`kind.Inputs.training_batches`), so training never sees them: the trajectory is the same with
and without. g_B is the batch's loss gradient at w, H_B its Hessian, and s the direction of the step
the optimizer would take with g_B from its current state, (w − w')/η (g_B + β m for heavy ball),
whose stability a momentum method's edge is about. At full batch every batch is the whole set (M =
1). Each batch costs one gradient and one HVP (two with momentum), M at a time through `lax.map`, so
the memory is that of one batch. The eigenvalue figures draw BS against the method's edge.
"""

import dataclasses
from typing import Any, Mapping, Optional, Sequence

from sam_edge.curvature.kind import Inputs, Kind
from sam_edge.options import Option
from sam_edge.plots.spec import Series


@dataclasses.dataclass(frozen=True)
class BatchSharpnessSettings:
  """`batches` fresh batches; `momentum`: also the momentum-aware variant."""
  batches: int = 64
  momentum: bool = False


class BatchSharpness(Kind):
  name, seed = "batch_sharpness", 6
  settings_type = BatchSharpnessSettings
  record_keys = ("batch_sharpness", "batch_sharpness_stderr", "batch_sharpness_ratio",
                 "batch_sharpness_momentum", "batch_sharpness_batches")
  options = (
      Option("measure_batch_sharpness", False, "Measure the batch sharpness "
             "E_B[g_Bᵀ H_B g_B / ||g_B||²] over --batch_sharpness_batches fresh batches of "
             "the run's batch size (and its ratio-of-expectations variant; with heavy ball or "
             "Nesterov, E_B[sᵀ H_B s / sᵀ g_B] for the optimizer's step s)."),
      Option("batch_sharpness_batches", 64, "Fresh batches per batch-sharpness measurement."),
  )

  def settings(self, values: Mapping[str, Any]) -> Optional[BatchSharpnessSettings]:
    if not values["measure_batch_sharpness"]:
      return None
    return BatchSharpnessSettings(batches=values["batch_sharpness_batches"],
                                  momentum=values["optimizer"] in ("momentum", "nesterov"))

  def problems(self, settings: BatchSharpnessSettings) -> list[str]:
    if settings.batches < 2:
      return [f"--batch_sharpness_batches must be at least 2 (a standard error), got "
              f"{settings.batches}"]
    return []

  def measure(self, inputs: Inputs, settings: BatchSharpnessSettings, key: Any, state: Any
              ) -> tuple[dict, Any]:
    import jax  # pylint: disable=import-outside-toplevel
    import jax.numpy as jnp  # pylint: disable=import-outside-toplevel
    import optax  # pylint: disable=import-outside-toplevel

    from sam_edge.curvature import hvp  # pylint: disable=import-outside-toplevel
    if inputs.training_batches is None:
      raise ValueError("batch sharpness needs the training set (kind.Inputs.training_batches)")
    loss, params = inputs.objective.loss, inputs.params
    count = 1 if inputs.full_batch else settings.batches

    def one(k: Any) -> tuple:
      batch = inputs.training_batches(k)
      g = jax.grad(loss)(params, batch)
      g_hg = optax.tree.vdot(g, hvp.exact_hvp(loss, params, batch, g))
      g_g = optax.tree.vdot(g, g)
      s_term = jnp.zeros_like(g_g)
      if settings.momentum:
        s = inputs.optimizer_step(g)
        s_term = optax.tree.vdot(s, hvp.exact_hvp(loss, params, batch, s)) / optax.tree.vdot(s, g)
      return g_hg, g_g, s_term

    g_hg, g_g, s_terms = jax.lax.map(one, jax.random.split(key, count))
    each = g_hg / g_g
    stderr = (jnp.std(each, ddof=1) / jnp.sqrt(count) if count > 1
              else jnp.zeros([], each.dtype))
    return {"batch_sharpness": jnp.mean(each), "batch_sharpness_stderr": stderr,
            "batch_sharpness_ratio": jnp.sum(g_hg) / jnp.sum(g_g),
            "batch_sharpness_momentum": jnp.mean(s_terms) if settings.momentum else None,
            "batch_sharpness_batches": jnp.asarray(count, jnp.int32)}, state

  def line(self, record: Mapping[str, Any]) -> str:
    return (f" | batch sharpness {record['batch_sharpness']:.6g} "
            f"± {record['batch_sharpness_stderr']:.2g}")

  def scalars(self, record: Mapping[str, Any]) -> dict[str, Any]:
    return {f"curvature/{key}": record[key] for key in self.record_keys[:4]
            if record[key] is not None}

  def eigen_series(self, records: Sequence[Mapping[str, Any]]) -> list[Series]:
    if not records:
      return []
    steps = [r["step"] for r in records]
    out = [Series("batch sharpness E[gᵀHg/‖g‖²]", steps,
                  [r["batch_sharpness"] for r in records],
                  {"color": "tab:purple", "linewidth": 1.4},
                  lower=[r["batch_sharpness"] - 2 * r["batch_sharpness_stderr"] for r in records],
                  upper=[r["batch_sharpness"] + 2 * r["batch_sharpness_stderr"]
                         for r in records])]
    if records[-1].get("batch_sharpness_momentum") is not None:
      out.append(Series("momentum batch sharpness E[sᵀHs/sᵀg]", steps,
                        [r["batch_sharpness_momentum"] for r in records],
                        {"color": "tab:brown", "linestyle": "--", "linewidth": 1.2}))
    return out


BATCH_SHARPNESS = BatchSharpness()
