"""SAM (Foret et al. 2021; the reference's and the default): ε = ρ g/(‖g‖ + 1e-5),
d = ∇L(w + ε).

Edge (derived on L = ½ wᵀ H w, E the base optimizer's edge less the L2 weight decay): with plain
descent, in the step from w with g = ||∇L(w)|| the eigen-component of curvature a is multiplied by
1 − η a (1 + ρ a / g), so the edge is the λ with λ (1 + (ρ/g) λ) = E: the SAM-edge
(4/η)/(sqrt(1 + 8ρ/(η g)) + 1) when wd = 0. With momentum, Nesterov or Adam g changes along the
recurrence: no closed form (None).
"""

from typing import Any

from sam_edge import options
from sam_edge.optim import optimizers, variant


def perturbation(params: Any, grad: Any, rho: Any, values: Any) -> Any:
  """ε (module doc)."""
  from sam_edge.optim import sam_steps  # pylint: disable=import-outside-toplevel  (variant doc)
  return sam_steps.normalized(grad, rho)


def edge(base: optimizers.Optimizer, e: Any, eta: Any, rho: float, grad_norm: Any,
         weight_decay: float) -> Any:
  """The SAM-edge (module doc); None unless the base method is plain descent."""
  if not base.memoryless:
    return None
  if grad_norm is None:
    raise ValueError("the SAM-edge of normalized SAM needs the gradient norm")
  from sam_edge.optim import thresholds  # pylint: disable=import-outside-toplevel  (variant doc)
  if weight_decay == 0:
    return thresholds.sam_edge(grad_norm, eta, rho)       # exactly the reference's SAM-edge
  return thresholds.scaled_curvature_edge(e, rho, grad_norm)


VARIANT = variant.Variant(
    "normalized", options.doc_summary(__doc__), (), "SAM", variant.perturbed(perturbation),
    edge=edge, edge_formula=lambda base, f: "SAM-edge" if base.memoryless else None, groups=True)
