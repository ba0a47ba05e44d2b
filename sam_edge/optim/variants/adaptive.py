"""ASAM (Kwon et al. 2021): ε = ρ T² g/‖T g‖, T = |w| + ξ elementwise, ξ = --asam_xi,
d = ∇L(w + ε); ε = 0 when T g = 0.

Edge: none known (None).
"""

from typing import Any

from sam_edge import options
from sam_edge.optim import variant

ASAM_XI = options.Option("asam_xi", 0.01, "ξ of ASAM's T (--sam=adaptive; Kwon et al.: 0.01).",
                         check=options.non_negative)


def perturbation(params: Any, grad: Any, rho: Any, values: Any) -> Any:
  """ε (module doc)."""
  import jax  # pylint: disable=import-outside-toplevel  (variant doc)

  from sam_edge import trees  # pylint: disable=import-outside-toplevel
  t = jax.tree.map(lambda w: abs(w) + values["asam_xi"], params)
  direction, _ = trees.safe_normalize(jax.tree.map(lambda a, b: a * b, t, grad))
  return jax.tree.map(lambda ti, d: rho * ti * d, t, direction)


VARIANT = variant.Variant("adaptive", options.doc_summary(__doc__), (ASAM_XI,),
                          "ASAM", variant.perturbed(perturbation), groups=True)
