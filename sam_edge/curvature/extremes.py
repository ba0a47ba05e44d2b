"""The most negative curvature: λ_min(H), the smallest algebraic eigenvalue, and its residual.

λ_min(H) = −λ_max(−H): Lanczos (`lanczos.lanczos`, k = 1) on v ↦ −Hv gives the top Ritz pair
(θ, y) of −H, so λ_min = −θ with the same Ritz vector y and the same residual

    ||H y − λ_min y|| = ||(−H) y − θ y||.

It stops once that residual is at most tol·|λ_min| (or after `max_steps` HVPs) and is
warm-started like the top eigenvalue: pass the previous measurement's y as v0 (zeros for a
random start). λ_min < 0 means negative curvature: the iterate is not at a local minimum.
"""

import jax

from sam_edge.curvature import lanczos, operators


def min_eigenpair(matvec: operators.MatVec, v0: jax.Array, key: jax.Array, *, max_steps: int,
                  tol: float, min_steps: int = 1) -> tuple[dict[str, jax.Array], jax.Array]:
  """({"min_eigenvalue", "min_eigenvalue_residual", "min_eigenvalue_hvps"}, y [n]) (module doc)."""
  result = lanczos.lanczos(lambda v: -matvec(v), v0, key, k=1, max_steps=max_steps, tol=tol,
                           min_steps=min_steps)
  record = {"min_eigenvalue": -result.eigenvalues[0],
            "min_eigenvalue_residual": result.residuals[0],
            "min_eigenvalue_hvps": result.num_matvecs}
  return record, result.vectors[0]
