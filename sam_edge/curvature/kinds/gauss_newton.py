"""The top eigenvalue of the Gauss–Newton matrix, `--measure_gauss_newton`.

With the measured loss L(w) = ℓ(f(w, x), y) (`objective.Objective`), J = ∂f/∂w the Jacobian of
the network's outputs (the logits) and H_ℓ = ∇²_f ℓ the Hessian of the loss in the outputs,

    G = Jᵀ H_ℓ J,        ∇²L = G + Σ_o (∂ℓ/∂f_o) ∇²f_o,

so G is the part of the Hessian the network's curvature does not enter (positive semi-definite
for a convex ℓ: squared error, cross-entropy). For a network linear in w (the linearized model)
the second term vanishes and G = ∇²L. A product G v costs one linearization of f (a forward
pass), its transpose (a backward pass) and an HVP of ℓ in the outputs (cheap): about one HVP.
With --measure_chunk, G is the mean of the chunks' Gauss–Newton matrices, as L is the mean of
their losses. With the weight decay in the loss (`objective.Objective.penalty`, R(w) =
(λ/2)‖M⊙w‖², quadratic in w) G gains R's Hessian λ diag(M), which is its own Gauss–Newton part:
G is that of the loss the optimizer follows, as the measured Hessian is.

Lanczos (`curvature.lanczos`, k = 1) with the top eigenvalue's cap and tolerance
(`--lanczos_max_steps`, `--lanczos_tol`), warm-started from the previous measurement's
eigenvector. Records `gauss_newton` (λ1(G)), `gauss_newton_residual` (||G y − λ1 y||) and
`gauss_newton_hvps` (products with G); drawn beside λ1(H) in the curvature figure.
"""

import dataclasses
from typing import Any, Mapping, Optional, Sequence

from sam_edge.curvature.kind import Inputs, WarmLanczosKind
from sam_edge.options import Option
from sam_edge.plots.spec import XLABEL, Panel, Series


@dataclasses.dataclass(frozen=True)
class GaussNewtonSettings:
  """Lanczos on G: at most `max_steps` products, stop when the residual ≤ tol·|λ1(G)|."""
  max_steps: int = 20
  tol: float = 1e-4
  min_steps: int = 3


def gauss_newton_matvec(objective: Any, params: Any, batch: Any) -> Any:
  """v ↦ G v on raveled parameter vectors (module doc)."""
  import jax  # pylint: disable=import-outside-toplevel
  from jax.flatten_util import ravel_pytree  # pylint: disable=import-outside-toplevel
  flat, unravel = ravel_pytree(params)

  def product(v: Any) -> Any:
    def one(part: Any) -> Any:                   # the whole batch, or one chunk of it
      outputs, jvp = jax.linearize(lambda p: objective.forward(p, part), params)
      jv = jvp(unravel(v.astype(flat.dtype)))                               # J v
      loss_grad = jax.grad(lambda o: objective.output_loss(o, part))
      hjv = jax.jvp(loss_grad, (outputs,), (jv,))[1]                        # H_ℓ J v
      (jthjv,) = jax.linear_transpose(jvp, params)(hjv)                     # Jᵀ H_ℓ J v
      return ravel_pytree(jthjv)[0]
    gv = objective.chunk_mean(one, batch)
    if objective.penalty is None:
      return gv
    tangent = unravel(v.astype(flat.dtype))
    penalty_hv = jax.jvp(jax.grad(objective.penalty), (params,), (tangent,))[1]   # λ M⊙v
    return gv + ravel_pytree(penalty_hv)[0].astype(gv.dtype)
  return product


class GaussNewton(WarmLanczosKind):
  name, seed = "gauss_newton", 5
  settings_type = GaussNewtonSettings
  cap_flag = "--measure_gauss_newton"
  record_keys = ("gauss_newton", "gauss_newton_residual", "gauss_newton_hvps")
  options = (Option("measure_gauss_newton", False, "Measure the top eigenvalue of the "
                    "Gauss–Newton matrix G = Jᵀ H_ℓ J (J: the Jacobian of the logits, H_ℓ: the "
                    "Hessian of the loss in the logits), with its residual."),)

  def settings(self, values: Mapping[str, Any]) -> Optional[GaussNewtonSettings]:
    if not values["measure_gauss_newton"]:
      return None
    return GaussNewtonSettings(max_steps=values["lanczos_max_steps"], tol=values["lanczos_tol"],
                               min_steps=min(3, values["lanczos_max_steps"]))

  def measure(self, inputs: Inputs, settings: GaussNewtonSettings, key: Any, state: Any
              ) -> tuple[dict, Any]:
    from sam_edge.curvature import lanczos  # pylint: disable=import-outside-toplevel
    objective, params, batch = inputs.objective, inputs.params, inputs.batch
    result = lanczos.lanczos(gauss_newton_matvec(objective, params, batch), state, key, k=1,
                             max_steps=settings.max_steps, tol=settings.tol,
                             min_steps=settings.min_steps)
    return {"gauss_newton": result.eigenvalues[0], "gauss_newton_residual": result.residuals[0],
            "gauss_newton_hvps": result.num_matvecs}, result.vectors[0]

  def line(self, record: Mapping[str, Any]) -> str:
    return f" | λ1(G) {record['gauss_newton']:.6g}"

  def scalars(self, record: Mapping[str, Any]) -> dict[str, Any]:
    return {"curvature/gauss_newton": record["gauss_newton"]}

  def panels(self, records: Sequence[Mapping[str, Any]], title: str) -> list[Panel]:
    steps = [r["step"] for r in records]
    return [Panel(f"{title}: Gauss–Newton", XLABEL, "top eigenvalue", [
        Series("λ1(G), G = Jᵀ H_ℓ J", steps, [r["gauss_newton"] for r in records],
               {"color": "tab:green"}),
        Series("λ1(H)", steps, [(r.get("eigenvalues") or [None])[0] for r in records],
               {"color": "tab:blue", "linestyle": "--", "linewidth": 1.0})])]


GAUSS_NEWTON = GaussNewton()
