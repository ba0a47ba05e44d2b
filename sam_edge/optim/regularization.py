"""Weight decay in its two forms, its mask, and the clipping of the optimizer's direction.

With λ = --weight_decay, M the decay mask (1 everywhere; with --no_weight_decay_on_norm 0 on the
normalisation layers' scales and offsets, `models.normalization`, and on every parameter of rank
≤ 1, the biases: google-research/sam decays only the x with x.ndim > 1) and d the direction the
SAM variant hands the base optimizer (`update`):

    in the optimizer (default)   the base optimizer receives  c(d + λ M⊙w)
                                 SAM's ε and the measured Hessian see L alone
    in the loss                  the loss is  L(w) + R(w),  R(w) = (λ/2) ‖M⊙w‖²
    (--weight_decay_in_loss)     every gradient is one of L + R (SAM's ε and d included), the
                                 base optimizer receives  c(d),  and the measured Hessian is
                                 ∇²L + λ diag(M) (λ I without the mask): the loss followed

with c the clip of --clip_grad_norm = c_max (the identity when unset),

    c(g) = g · min(1, c_max/‖g‖)        (optax.clip_by_global_norm),

taken after the decay is added, as the SAM paper clips ∇(L + R) after adding L2 to its loss.
So the clipped vector is the gradient of the regularised objective in both forms; in the
optimizer's form it is ∇L(w + ε) + λ M⊙w, in the loss's ∇L(w + ε) + λ M⊙(w + ε).
"""

from typing import Callable, Optional

import jax
import jax.numpy as jnp
import optax

from sam_edge.models import normalization
from sam_edge.pytree import PyTree


def is_decayed(path: tuple, leaf: jax.Array, exempt_norm: bool) -> bool:
  """Whether the parameter at `path` is decayed: always, or with `exempt_norm` unless it is a
  normalisation layer's scale or offset or has rank ≤ 1 (module doc)."""
  if not exempt_norm:
    return True
  rank = len(getattr(leaf, "shape", ()))        # arrays and ShapeDtypeStructs alike
  return not (normalization.is_normalization(path) or rank <= 1)


def decay_mask(params: PyTree, exempt_norm: bool) -> PyTree:
  """M: a pytree like `params` of Python bools, True where the parameter is decayed."""
  return jax.tree_util.tree_map_with_path(lambda path, x: is_decayed(path, x, exempt_norm),
                                          params)


def penalty(params: PyTree, weight_decay: float, exempt_norm: bool) -> jax.Array:
  """R(w) = (λ/2) Σ_i M_i w_i², summed over the decayed parameters (float32 or wider)."""
  mask = decay_mask(params, exempt_norm)
  squares = [jnp.sum(jnp.square(x)) for keep, x in zip(jax.tree.leaves(mask),
                                                     jax.tree.leaves(params)) if keep]
  total = sum(squares) if squares else jnp.zeros([], jnp.float32)
  return 0.5 * weight_decay * total


def before_base(weight_decay: float, exempt_norm: bool, clip: Optional[float]
                ) -> list[optax.GradientTransformation]:
  """The stateless transformations in front of the base optimizer: the decay λ M⊙w added (λ
  the optimizer's part of the decay, 0 when it is in the loss), then the clip."""
  steps = []
  if weight_decay:
    mask = (lambda params: decay_mask(params, True)) if exempt_norm else None
    steps.append(optax.add_decayed_weights(weight_decay, mask=mask))
  if clip is not None:
    steps.append(optax.clip_by_global_norm(clip))
  return steps


def seen(steps: list[optax.GradientTransformation], direction: PyTree, params: PyTree) -> PyTree:
  """What the base optimizer receives: `direction` through `before_base`'s steps."""
  for step in steps:
    direction, _ = step.update(direction, step.init(params), params)
  return direction


def regularized(loss_fn: Callable[[PyTree, PyTree], tuple[jax.Array, PyTree]],
                penalty_fn: Optional[Callable[[PyTree], jax.Array]]
                ) -> Callable[[PyTree, PyTree], tuple[jax.Array, PyTree]]:
  """`(params, batch) -> (L(w) + R(w), aux)` for a loss `(params, batch) -> (L, aux)`; the loss
  itself when `penalty_fn` is None."""
  if penalty_fn is None:
    return loss_fn

  def loss(params: PyTree, batch: PyTree) -> tuple[jax.Array, PyTree]:
    value, aux = loss_fn(params, batch)
    return value + penalty_fn(params), aux
  return loss


def regularized_examples(example_losses: Callable[[PyTree, PyTree], jax.Array],
                         penalty_fn: Optional[Callable[[PyTree], jax.Array]]
                         ) -> Callable[[PyTree, PyTree], jax.Array]:
  """`(params, batch) -> [B]`: each example's loss plus R(w) (ESAM's subset then follows
  L_S + R); the losses themselves when `penalty_fn` is None."""
  if penalty_fn is None:
    return example_losses
  return lambda params, batch: example_losses(params, batch) + penalty_fn(params)
