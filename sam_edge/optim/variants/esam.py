"""ESAM (Du et al. 2022): ε = M⊙ρg/(β‖g‖), M_i ~ Bernoulli(β), β = --esam_weight_fraction;
d = ∇L(w + ε) on the round(γB) examples of the batch whose loss rose most under ε,
γ = --esam_example_fraction.

In full, with g = ∇L(w), R and ε_ρ as in `sam_steps`,

    M_i ~ Bernoulli(β) per weight, ε = R (M ⊙ ε_ρ(R g))/β; S = the round(γB)           1 + γ,
    examples with the largest L_i(w + ε) − L_i(w); d = ∇L_S(w + ε)           2 forward passes

M drawn from the step's key; the per-example losses from the oracle. Edge: none known (None).
"""

from typing import Any

from sam_edge import options
from sam_edge.optim import variant

FRACTION = options.interval(0, 1, low_open=True, high_open=False)      # (0, 1]
ESAM_WEIGHT_FRACTION = options.Option(
    "esam_weight_fraction", 0.5, "β of ESAM, in (0, 1] (--sam=esam; Du et al.: 0.5 to "
    "0.6).", check=FRACTION)
ESAM_EXAMPLE_FRACTION = options.Option(
    "esam_example_fraction", 0.5, "γ of ESAM, in (0, 1] (--sam=esam; Du et al.: 0.5).",
    check=FRACTION)


def direction(sam: Any, oracle: Any, params: Any, state: Any, key: Any, step: Any) -> Any:
  """Bernoulli(β) weights perturbed by ε/β, the second gradient on the fraction γ of the batch
  whose loss rose most (module doc)."""
  import jax  # pylint: disable=import-outside-toplevel  (variant doc)
  import jax.numpy as jnp  # pylint: disable=import-outside-toplevel
  import optax  # pylint: disable=import-outside-toplevel

  from sam_edge.data import batching  # pylint: disable=import-outside-toplevel
  from sam_edge.optim import oracle as oracles  # pylint: disable=import-outside-toplevel
  from sam_edge.optim import sam_steps  # pylint: disable=import-outside-toplevel
  beta, gamma = sam.values["esam_weight_fraction"], sam.values["esam_example_fraction"]
  if oracle.example_losses is None:
    raise ValueError("--sam=esam needs the per-example losses")
  restrict = sam_steps.restriction(params, sam.perturbed)
  loss, g, aux = oracle.first_gradient(params)
  full = sam_steps.normalized(restrict(g), sam.rho)
  eps = restrict(jax.tree.map(
      lambda k, e: jnp.where(jax.random.bernoulli(k, beta, e.shape), e / beta, jnp.zeros_like(e)),
      sam_steps.leaf_keys(sam_steps.need_key(key), full), full))
  adversary = optax.tree.add(params, eps)
  batch = oracle.batch
  rise = oracle.example_losses(adversary, batch) - oracle.example_losses(params, batch)   # [B]
  count = max(1, int(gamma * batching.num_examples(batch) + 0.5))
  _, chosen = jax.lax.top_k(rise, count)
  d = jax.grad(oracle.loss_fn, has_aux=True)(adversary, batching.take(batch, chosen))[0]
  return oracles.Gradients(loss, g, d, aux, state)


VARIANT = variant.Variant(
    "esam", options.doc_summary(__doc__),
    (ESAM_WEIGHT_FRACTION, ESAM_EXAMPLE_FRACTION), "ESAM", direction, accumulates=False)
