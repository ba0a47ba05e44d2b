"""Fisher-SAM (Kim et al. 2022): ε = ρ f⁻¹⊙g/√(g·(f⁻¹⊙g)), f = 1 + η_f g⊙g the diagonal Fisher
estimate from the batch gradient (Kim et al.'s approximation), η_f = --fisher_eta,
d = ∇L(w + ε); ε = 0 when g = 0.

Edge: none known (None).
"""

from typing import Any

from sam_edge import options
from sam_edge.optim import variant

FISHER_ETA = options.Option("fisher_eta", 1.0, "η_f of Fisher-SAM's diagonal Fisher estimate "
                            "f (--sam=fisher; Kim et al.'s code: 1).", check=options.non_negative)


def perturbation(params: Any, grad: Any, rho: Any, values: Any) -> Any:
  """ε (module doc)."""
  import jax  # pylint: disable=import-outside-toplevel  (variant doc)
  import jax.numpy as jnp  # pylint: disable=import-outside-toplevel
  import optax  # pylint: disable=import-outside-toplevel
  scaled = jax.tree.map(lambda g: g / (1.0 + values["fisher_eta"] * g * g), grad)     # f⁻¹⊙g
  root = jnp.sqrt(optax.tree.vdot(grad, scaled))
  return optax.tree.scale(jnp.where(root > 0, rho / jnp.where(root > 0, root, 1.0), 0.0), scaled)


VARIANT = variant.Variant(
    "fisher", options.doc_summary(__doc__), (FISHER_ETA,),
    "Fisher-SAM", variant.perturbed(perturbation), groups=True)
