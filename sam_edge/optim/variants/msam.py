"""Momentum-SAM (Becker, Altrock and Risse 2024): ε = −ρm/‖m‖, d = ∇L(w + ε), m ← μm + d,
μ = --msam_momentum: one gradient per step.

The paper: "Momentum-SAM: Sharpness Aware Minimization without Computational Overhead"; its code:
github.com/MarlonBecker/MSAM, optimizer/msam.py. In full, with R the restriction to the perturbed
parameters (`sam_steps`) and m the variant's momentum buffer of the directions it hands the base
optimizer, m_0 = 0:

    ε_t = −ρ R m_t/(‖R m_t‖ + 1e-12)  (0 for R m_t = 0: the first step is the base optimizer's)
    d_t = ∇L(w_t + ε_t)                                                             1 gradient
    m_{t+1} = μ m_t + d_t,  μ = --msam_momentum

The paper's code keeps the iterate at w_t + ε_t and reads ε from its SGD's heavy-ball buffer
v_{t+1} = μ v_t + ∇L(w_t + ε_t) (its step w_{t+1} = w_t − η v_{t+1}), ε taken from the buffer
before the step's update. Here the variant keeps its own m, so that it sits in front of any base
optimizer and reads nothing of its state: with `--optimizer=momentum --momentum=μ` and
`--weight_decay=0` m is exactly the heavy-ball buffer (optax's trace m ← d + β m), and this is the
paper's MSAM; with weight decay the paper's buffer also holds wd·w. Its defaults: μ = 0.9 (its
SGD's), ρ = 0.3 (its class; its CIFAR and ImageNet runs use ρ = 3, since ε is one normalised
step and not an ascent from the batch's own gradient); here ρ is --rho.

The one pass is at w + ε: without the oracle's `first` the step's loss, gradient and aux
(`oracle.Gradients`) are at w + ε (the paper's code logs that loss too); with it (a tracked step,
a measurement) they are at w and ε and ∇L(w + ε) come back as well. Edge: none derived (None): on
L = ½ wᵀ H w, d = H w − ρ H m̂ adds to the base recurrence a forcing of fixed length along the
normalised buffer, not a multiple of w.
"""

from typing import Any

from sam_edge import options
from sam_edge.optim import variant

MSAM_MOMENTUM = options.Option(
    "msam_momentum", 0.9, "μ of Momentum-SAM's buffer m, in [0, 1) (--sam=msam; the paper's: 0.9; "
    "set it to --momentum with --optimizer=momentum to use the optimizer's own buffer).",
    check=options.interval(0, 1))


def init(params: Any) -> dict:
  """m = 0 before the first step."""
  import jax  # pylint: disable=import-outside-toplevel  (variant doc)
  import jax.numpy as jnp  # pylint: disable=import-outside-toplevel
  return {"m": jax.tree.map(jnp.zeros_like, params)}


def direction(sam: Any, oracle: Any, params: Any, state: Any, key: Any, step: Any) -> Any:
  """ε = −ρ R m/‖R m‖, d = ∇L(w + ε), m ← μ m + d (module doc)."""
  import jax.numpy as jnp  # pylint: disable=import-outside-toplevel  (variant doc)
  import optax  # pylint: disable=import-outside-toplevel

  from sam_edge.optim import oracle as oracles  # pylint: disable=import-outside-toplevel
  from sam_edge.optim import sam_steps  # pylint: disable=import-outside-toplevel
  restrict = sam_steps.restriction(params, sam.perturbed)
  m = restrict(state["m"])
  norm = optax.tree.norm(m)
  eps = optax.tree.scale(jnp.where(norm > 0, -sam.rho / (norm + 1e-12), 0.0), m)
  mu = sam.values["msam_momentum"]
  if oracle.first is None:
    loss, d, aux = oracle.value_and_grad(optax.tree.add(params, eps))
    return oracles.Gradients(loss, d, d, aux, {"m": _next(mu, state["m"], d)})
  loss, g, aux = oracle.first
  d = oracle.grad(optax.tree.add(params, eps))
  return oracles.Gradients(loss, g, d, aux, {"m": _next(mu, state["m"], d)}, eps, d)


def _next(mu: float, m: Any, d: Any) -> Any:
  """μ m + d."""
  import jax  # pylint: disable=import-outside-toplevel  (variant doc)
  return jax.tree.map(lambda mi, di: mu * mi + di, m, d)


VARIANT = variant.Variant(
    "msam", options.doc_summary(__doc__), (MSAM_MOMENTUM,), "Momentum-SAM", direction, init=init)
