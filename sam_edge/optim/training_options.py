"""The training knobs of the SAM paper's protocol (Foret et al. 2021, google-research/sam,
`sam_jax/training_utils/flax_training.py`) as options, and their cross-flag problems.

    --weight_decay_in_loss      L2 in the loss: L(w) + (λ/2)‖M⊙w‖², λ = --weight_decay
                                (the paper's `l2_reg`), so SAM's ε sees it (`regularization`)
    --no_weight_decay_on_norm   M = 0 on the normalisation layers' scales and offsets and on every
                                parameter of rank ≤ 1 (biases): the paper's
                                `no_weight_decay_on_bn`, which decays only the x with x.ndim > 1
    --clip_grad_norm=c          d ← d·min(1, c/‖d‖) (the paper's `gradient_clipping`, 5.0 there)
    --ema_decay=d               w̄ ← d·w̄ + (1−d)·w after each step (`ema`; the paper's
                                `ema_decay`)

The paper's defaults differ from ours (clipping at 5, its EMA off by 0): ours leave every run as
it was. Imports neither jax nor absl (defining the flags stays fast).
"""

from typing import Any, Optional

from sam_edge import options
from sam_edge.options import Option


def _clip_check(x: Any) -> Optional[str]:
  reason = options.positive(x)
  return f"{reason} (leave it unset for no clipping)" if reason else None


WEIGHT_DECAY_IN_LOSS = Option(
    "weight_decay_in_loss", False,
    "Put the L2 weight decay in the loss, L(w) + (λ/2)‖w‖² with λ = --weight_decay (the SAM "
    "paper's form): SAM's perturbation sees it, the base optimizer gets no separate "
    "decay, and the measured Hessian is that of this loss (it gains λ on the decayed "
    "parameters), as do the recorded losses. Default: the decay wd·w is added to the direction "
    "the base optimizer sees, after SAM. Needs --weight_decay > 0.")
NO_WEIGHT_DECAY_ON_NORM = Option(
    "no_weight_decay_on_norm", False,
    "No weight decay (in either form) on the normalisation layers' scales and offsets (found as "
    "--sam_params=normalization finds them) nor on any parameter of rank ≤ 1 (biases): the rule "
    "of the SAM paper's --no_weight_decay_on_bn, which decays only the parameters with "
    "x.ndim > 1. Needs --weight_decay > 0.")
CLIP_GRAD_NORM = Option(
    "clip_grad_norm", None,
    "Clip the direction the base optimizer follows by its global norm, d ← d·min(1, c/‖d‖) "
    "(SAM's ∇L(w+ε); the gradient when ρ = 0), after the weight decay is added to it (or with "
    "--weight_decay_in_loss, with the L2 term inside it), as the SAM paper clips (its "
    "--gradient_clipping, 5.0 there). Default: no clipping; the edges assume the clip does not "
    "bind.", type=float, check=_clip_check)
EMA_DECAY = Option(
    "ema_decay", None,
    "An exponential moving average of the weights, w̄ ← d·w̄ + (1−d)·w after every step from "
    "w̄ = w at the start, the BatchNorm statistics averaged alike (as the SAM paper's "
    "--ema_decay, without its warm-up); evaluations and the final metrics also report the "
    "averaged network (`ema_test_error`, ...), and --params_output holds it. In [0, 1); 0 or "
    "unset: off.", type=float, check=options.interval(0, 1))

OPTIONS = (WEIGHT_DECAY_IN_LOSS, NO_WEIGHT_DECAY_ON_NORM, CLIP_GRAD_NORM, EMA_DECAY)


def decay_problems(weight_decay: Any, in_loss: bool, exempt_norm: bool) -> list[str]:
  """The weight-decay forms need a decay to act on: one line per flag given without
  --weight_decay > 0."""
  if isinstance(weight_decay, (int, float)) and weight_decay > 0:
    return []
  given = [name for name, on in (("weight_decay_in_loss", in_loss),
                                 ("no_weight_decay_on_norm", exempt_norm)) if on]
  return [f"--{name} needs --weight_decay > 0, got --weight_decay={weight_decay}"
          for name in given]
