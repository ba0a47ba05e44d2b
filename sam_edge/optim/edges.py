"""The stability edge of a configured method, from the tables.

A method's edge (`method_edge`) is its base optimizer's (`optimizers.OPTIMIZERS[...].edge`, each
derived there), less the L2 weight decay wd (the method trains on the curvatures a + wd), then
its SAM variant's (`sam.SAM_VARIANTS[...].edge`, derived there); None where none is known:
m-sharpness (a group size other than the batch), SAM-ON (ε restricted to the normalisation
layers is no longer along the eigen-directions of H), an adaptive optimizer with weight decay
(the decay term is preconditioned too), the decay in the optimizer with the mask of
--no_weight_decay_on_norm (it shifts the curvatures of the decayed parameters only), and the
variants and optimizers whose entries say so. --accumulate_batches changes no edge: the step is
the same.

With --weight_decay_in_loss the decay is part of the measured loss (its Hessian gains λ on the
decayed parameters, `optim.regularization`): the method is the base optimizer and SAM variant on
that loss, so the edge is theirs with wd = 0, mask or no mask. --clip_grad_norm: the edges are
those of the unclipped step (they hold while ‖d‖ ≤ c).
"""

from typing import Optional

import jax
import jax.numpy as jnp

from sam_edge.optim.optimizers import OptimizerSettings
from sam_edge.optim.sam import SamSettings


def _applies(optimizer: OptimizerSettings, sam: SamSettings,
             batch_size: Optional[int]) -> bool:
  """Whether a closed form can apply at all (static): the base optimizer has an edge, no
  weight decay on an adaptive method, and with SAM no m-sharpness groups and no restriction of
  ε to some parameters (SAM-ON)."""
  entry, wd = optimizer.entry, optimizer.optimizer_decay
  if entry.edge is None or (wd and (entry.preconditioner is not None or optimizer.exempt_norm)):
    return False
  return sam.rho == 0 or ((sam.group_size is None or sam.group_size == batch_size)
                          and sam.perturbed == "all")


def method_edge(optimizer: OptimizerSettings, sam: SamSettings, step_size: float | jax.Array, *,
                grad_norm: Optional[jax.Array] = None,
                batch_size: Optional[int] = None) -> Optional[jax.Array]:
  """The stability edge of the configured method at a step of size η (module doc), or None.

  `grad_norm` (||∇L||) is needed by the variants whose edge depends on it (normalized SAM).
  Whether the result is None is decided at trace time from the static settings.
  """
  if not _applies(optimizer, sam, batch_size):
    return None
  entry, wd = optimizer.entry, optimizer.optimizer_decay
  edge = jnp.asarray(entry.edge(optimizer.values, step_size))
  edge = edge - wd if wd else edge
  if sam.rho == 0:
    return edge
  return sam.variant.edge(entry, edge, step_size, sam.rho, grad_norm, wd)


def edge_label(optimizer: OptimizerSettings, sam: SamSettings,
               batch_size: Optional[int] = None) -> Optional[str]:
  """The name of `method_edge`'s formula for plots, e.g. "(2+2β)/η, β=0.9"; None when it is None.

  The base optimizer's formula and values, "− wd" and its value with weight decay, the SAM
  variant's name for its edge ("SAM-edge", "unnormalized SAM-edge of ...").
  """
  if not _applies(optimizer, sam, batch_size):
    return None
  formula, *values = [part.strip() for part in
                      optimizer.entry.edge_formula(optimizer.values).split(",")]
  if optimizer.optimizer_decay:
    formula, values = f"{formula} − wd", values + [f"wd={optimizer.optimizer_decay:g}"]
  if sam.rho > 0:
    formula = sam.variant.edge_formula(optimizer.entry, formula)
    if formula is None:
      return None
  return ", ".join([formula] + values)
