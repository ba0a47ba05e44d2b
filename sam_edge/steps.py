"""Pure update steps: SAM (normalised) and plain gradient descent.

With loss L, parameters w, step size η (inside `optimizer`) and SAM radius ρ:

    g      = ∇L(w)
    g_SAM  = ∇L(w + ρ g / (||g|| + 1e-5))          (same batch for both gradients)
    w     ← w − η g_SAM                            (with optax.sgd(η))

ρ = 0 is plain (S)GD and evaluates one gradient, not two. A zero gradient gives a zero
perturbation, never NaN.
"""

from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import optax

from sam_edge import trees

PyTree = Any
LossFn = Callable[[PyTree, PyTree], jax.Array]  # (params, batch) -> scalar mean loss

SAM_NORM_EPS = 1e-5


class TrainState(NamedTuple):
  """Everything the update changes: parameters, optimiser state and the step counter."""
  params: PyTree
  opt_state: PyTree
  step: jax.Array  # int32 []


def init_state(params: PyTree, optimizer: optax.GradientTransformation) -> TrainState:
  """The state before the first step."""
  return TrainState(params, optimizer.init(params), jnp.zeros([], jnp.int32))


class Gradients(NamedTuple):
  loss: jax.Array      # L(w) on the batch
  grad: PyTree         # ∇L(w)
  sam_grad: PyTree     # ∇L(w + ρ g/(||g|| + 1e-5)); the same object as `grad` when ρ = 0


def sam_gradients(loss_fn: LossFn, params: PyTree, batch: PyTree, rho: float) -> Gradients:
  """L(w), ∇L(w) and the SAM gradient ∇L(w + ρ ∇L(w)/(||∇L(w)|| + 1e-5)).

  `rho` is a Python float: ρ = 0 is decided at trace time and costs one gradient.
  """
  loss, grad = jax.value_and_grad(loss_fn)(params, batch)
  if rho == 0:
    return Gradients(loss, grad, grad)
  direction, _ = trees.safe_normalize(grad, eps=SAM_NORM_EPS)
  perturbed = optax.tree.add_scale(params, rho, direction)
  sam_grad = jax.grad(loss_fn)(perturbed, batch)
  return Gradients(loss, grad, sam_grad)


def sam_update(loss_fn: LossFn, optimizer: optax.GradientTransformation, rho: float,
               state: TrainState, batch: PyTree) -> tuple[TrainState, jax.Array]:
  """One SAM step (plain gradient descent when ρ = 0): returns `(new_state, L(w) on the batch)`."""
  grads = sam_gradients(loss_fn, state.params, batch, rho)
  updates, opt_state = optimizer.update(grads.sam_grad, state.opt_state, state.params)
  params = optax.apply_updates(state.params, updates)
  return TrainState(params, opt_state, state.step + 1), grads.loss


def make_update_step(loss_fn: LossFn, optimizer: optax.GradientTransformation, rho: float
                     ) -> Callable[[TrainState, PyTree], tuple[TrainState, jax.Array]]:
  """`sam_update` jitted once for this loss, optimiser and ρ; the old state is donated."""
  def step(state: TrainState, batch: PyTree) -> tuple[TrainState, jax.Array]:
    return sam_update(loss_fn, optimizer, rho, state, batch)
  return jax.jit(step, donate_argnums=0)
