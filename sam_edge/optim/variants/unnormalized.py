"""Unnormalized SAM: ε = ρ g, d = ∇L(w + ε).

Edge (derived on L = ½ wᵀ H w, E the base optimizer's edge less the L2 weight decay): with a
linear base method (GD, heavy ball, Nesterov) d = (H + ρH²) w, so the method runs on the
curvatures a (1 + ρ a), and the edge is the λ with λ (1 + ρλ) = E; None for the others.
"""

from typing import Any

from sam_edge import options
from sam_edge.optim import optimizers, variant


def perturbation(params: Any, grad: Any, rho: Any, values: Any) -> Any:
  """ε (module doc)."""
  import optax  # pylint: disable=import-outside-toplevel  (variant doc)
  return optax.tree.scale(rho, grad)


def edge(base: optimizers.Optimizer, e: Any, eta: Any, rho: float, grad_norm: Any,
         weight_decay: float) -> Any:
  """The λ with λ(1 + ρλ) = E (module doc); None unless the base method is linear."""
  from sam_edge.optim import thresholds  # pylint: disable=import-outside-toplevel  (variant doc)
  return thresholds.sam_curvature_edge(e, rho) if base.linear else None


def edge_formula(base: optimizers.Optimizer, formula: str) -> Any:
  """"unnormalized SAM-edge" (of the base edge's formula unless 2/η); None unless linear."""
  if not base.linear:
    return None
  return "unnormalized SAM-edge" + ("" if formula == "2/η" else f" of {formula}")


VARIANT = variant.Variant("unnormalized", options.doc_summary(__doc__), (), "unnormalized SAM",
                          variant.perturbed(perturbation), edge=edge, edge_formula=edge_formula,
                          groups=True)
