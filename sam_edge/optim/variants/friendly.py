"""Friendly-SAM (Li et al. 2024): m ← λm + (1 − λ)g, ε = ρ(g − σm)/‖g − σm‖, d = ∇L(w + ε),
σ = --friendly_sigma, λ = --friendly_lambda.

In full, with g = ∇L(w), R and ε_ρ as in `sam_steps`,

    m ← λ m + (1 − λ) g,  ε = R ε_ρ(R(g − σ m)),  d = ∇L(w + ε)                    2 gradients

state {m}, 0 before the first step. Edge: none known (None).
"""

from typing import Any

from sam_edge import options
from sam_edge.optim import variant

FRIENDLY_SIGMA = options.Option("friendly_sigma", 1.0, "σ of Friendly-SAM (--sam=friendly; Li et "
                                "al.: 1).", check=options.non_negative)
FRIENDLY_LAMBDA = options.Option("friendly_lambda", 0.95, "λ of Friendly-SAM's gradient average "
                                 "m, in [0, 1) (--sam=friendly; Li et al.'s released runs: "
                                 "0.95).",
                                 check=options.interval(0, 1))


def init(params: Any) -> dict:
  """m = 0 before the first step."""
  import jax  # pylint: disable=import-outside-toplevel  (variant doc)
  import jax.numpy as jnp  # pylint: disable=import-outside-toplevel
  return {"m": jax.tree.map(jnp.zeros_like, params)}


def direction(sam: Any, oracle: Any, params: Any, state: Any, key: Any, step: Any) -> Any:
  """m ← λ m + (1 − λ) g, ε = R ε_ρ(R(g − σ m)) (module doc)."""
  import jax  # pylint: disable=import-outside-toplevel  (variant doc)
  import optax  # pylint: disable=import-outside-toplevel

  from sam_edge.optim import oracle as oracles  # pylint: disable=import-outside-toplevel
  from sam_edge.optim import sam_steps  # pylint: disable=import-outside-toplevel
  sigma, lam = sam.values["friendly_sigma"], sam.values["friendly_lambda"]
  loss, g, aux = oracle.first_gradient(params)
  m = jax.tree.map(lambda m, gi: lam * m + (1.0 - lam) * gi, state["m"], g)
  eps = sam_steps.ascent(sam, params, jax.tree.map(lambda gi, mi: gi - sigma * mi, g, m))
  perturbed_grad = oracle.grad(optax.tree.add(params, eps))
  return oracles.Gradients(loss, g, perturbed_grad, aux, {"m": m}, eps, perturbed_grad)


VARIANT = variant.Variant(
    "friendly", options.doc_summary(__doc__), (FRIENDLY_SIGMA, FRIENDLY_LAMBDA), "Friendly-SAM",
    direction, init=init)
