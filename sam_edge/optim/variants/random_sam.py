"""Random-SAM (Liu et al. 2022): δ ~ N(0, σ²I), ε = δ + λρ∇L(w + δ)/‖∇L(w + δ)‖,
d = ∇L(w + ε), σ = --random_sam_sigma (per weight), λ = --random_sam_lambda.

In full, with g = ∇L(w), R and ε_ρ as in `sam_steps`,

    δ = R δ₀, δ₀ ~ N(0, σ²I);  ε = δ + R ε_λρ(R ∇L(w + δ)),  d = ∇L(w + ε)          3 gradients

δ₀ drawn from the step's key. Edge: none known (None).
"""

from typing import Any

from sam_edge import options
from sam_edge.optim import variant

RANDOM_SAM_SIGMA = options.Option("random_sam_sigma", 0.01, "σ of Random-SAM (--sam=random), "
                                  "per weight.", check=options.non_negative)
RANDOM_SAM_LAMBDA = options.Option("random_sam_lambda", 1.0, "λ of Random-SAM (--sam=random).",
                                   check=options.non_negative)


def direction(sam: Any, oracle: Any, params: Any, state: Any, key: Any, step: Any) -> Any:
  """δ ~ N(0, σ²I), then the ascent step of length λρ from w + δ (module doc)."""
  import jax  # pylint: disable=import-outside-toplevel  (variant doc)
  import optax  # pylint: disable=import-outside-toplevel

  from sam_edge.optim import oracle as oracles  # pylint: disable=import-outside-toplevel
  from sam_edge.optim import sam_steps  # pylint: disable=import-outside-toplevel
  sigma, lam = sam.values["random_sam_sigma"], sam.values["random_sam_lambda"]
  restrict = sam_steps.restriction(params, sam.perturbed)
  loss, g, aux = oracle.first_gradient(params)
  delta = restrict(jax.tree.map(lambda k, w: sigma * jax.random.normal(k, w.shape, w.dtype),
                                sam_steps.leaf_keys(sam_steps.need_key(key), params), params))
  smoothed = oracle.grad(optax.tree.add(params, delta))
  eps = optax.tree.add(delta, sam_steps.ascent(sam, params, smoothed, lam * sam.rho))
  perturbed_grad = oracle.grad(optax.tree.add(params, eps))
  return oracles.Gradients(loss, g, perturbed_grad, aux, state, eps, perturbed_grad)


VARIANT = variant.Variant(
    "random", options.doc_summary(__doc__), (RANDOM_SAM_SIGMA, RANDOM_SAM_LAMBDA), "Random-SAM",
    direction)
