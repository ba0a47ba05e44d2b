"""The perturbations ε(w, g, ρ, hyper) of the SAM variants given by their perturbation alone
(`sam.SAM_VARIANTS`), with g = ∇L(w) and the variant's own flag values `hyper`:

    normalized    ε = ρ g/(‖g‖ + 1e-5)
    unnormalized  ε = ρ g
    adaptive      ε = ρ T² g/‖T g‖, T = |w| + ξ elementwise (ASAM)
    fisher        ε = ρ f⁻¹⊙g/√(g·(f⁻¹⊙g)), f = 1 + η_f g⊙g (Fisher-SAM)

A zero gradient gives ε = 0, never NaN. jax is imported inside the functions only, so that the
table of `sam` (which defines flags) stays free of it.
"""

from typing import Any

from sam_edge.optim.sam_options import Hyper

SAM_NORM_EPS = 1e-5


def normalized(params: Any, grad: Any, rho: Any, h: Hyper) -> Any:
  """ε = ρ g / (||g|| + 1e-5)."""
  import optax  # pylint: disable=import-outside-toplevel

  from sam_edge import trees  # pylint: disable=import-outside-toplevel
  direction, _ = trees.safe_normalize(grad, eps=SAM_NORM_EPS)
  return optax.tree.scale(rho, direction)


def unnormalized(params: Any, grad: Any, rho: Any, h: Hyper) -> Any:
  """ε = ρ g."""
  import optax  # pylint: disable=import-outside-toplevel
  return optax.tree.scale(rho, grad)


def adaptive(params: Any, grad: Any, rho: Any, h: Hyper) -> Any:
  """ε = ρ T² g / ||T g|| with T = |w| + ξ elementwise (0 when T g = 0)."""
  import jax  # pylint: disable=import-outside-toplevel

  from sam_edge import trees  # pylint: disable=import-outside-toplevel
  t = jax.tree.map(lambda w: abs(w) + h["asam_xi"], params)
  direction, _ = trees.safe_normalize(jax.tree.map(lambda a, b: a * b, t, grad))
  return jax.tree.map(lambda ti, d: rho * ti * d, t, direction)


def fisher(params: Any, grad: Any, rho: Any, h: Hyper) -> Any:
  """ε = ρ f⁻¹⊙g / √(g·(f⁻¹⊙g)) with f = 1 + η_f g⊙g, the diagonal Fisher estimate from the batch
  gradient (Kim et al.'s approximation); 0 when g = 0."""
  import jax  # pylint: disable=import-outside-toplevel
  import jax.numpy as jnp  # pylint: disable=import-outside-toplevel
  import optax  # pylint: disable=import-outside-toplevel
  scaled = jax.tree.map(lambda g: g / (1.0 + h["fisher_eta"] * g * g), grad)     # f⁻¹⊙g
  root = jnp.sqrt(optax.tree.vdot(grad, scaled))
  return optax.tree.scale(jnp.where(root > 0, rho / jnp.where(root > 0, root, 1.0), 0.0), scaled)
