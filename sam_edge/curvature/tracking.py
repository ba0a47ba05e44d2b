"""λ1 at every training step (`--track_every_step`), for a few HVPs per step.

The tracked training step (`tracked_update`) linearizes the gradient once at w_t on the step's
own batch and loss L_t (`jax.linearize`): the primal pass is the step's ∇L(w_t), handed to the
SAM variant as its first gradient, so the update's gradient is computed once, and each HVP costs
the linearization's tangent pass alone.

With those HVPs, a Lanczos of `hvps` steps (`lanczos`, k = 1) starts from the tracker's vector
and gives λ1(H_t), its Ritz value θ with residual ||H_t y − θ y||. The next step starts from
H_t y/||H_t y||, a power step on the Ritz vector y that the Lanczos relation gives at no HVP
(`lanczos.power_step`): with one HVP per step the tracker is the power method across steps,
whose value is the exact Rayleigh quotient of the vector it carries. Between steps the
parameters move a little, so the warm vector is already close to the top eigenvector and one or
two HVPs keep it there. A scheduled measurement (a full Lanczos) refreshes the vector: its v1
replaces the tracker's after the step it was taken at, so the value tracked at a measured step
owes nothing to that measurement and can be compared with it.

With SAM (ρ > 0) the step computes ∇L(w) and ∇L(w + ε); along ε their difference is a
finite-difference curvature at no extra HVP,

    gradient_curvature = εᵀ (∇L(w + ε) − ∇L(w)) / ||ε||²  ≈  ε̂ᵀ H ε̂,

the curvature of the loss along the ascent direction (ĝᵀHĝ for normalized SAM). It is recorded
for the variants whose step takes ∇L(w + ε) on the whole batch (`oracle.Gradients.eps`): not for
LookSAM, ESAM (a subset's gradient) or m-sharpness groups.
"""

import dataclasses
from typing import Callable

import jax
import jax.numpy as jnp
import optax
from jax.flatten_util import ravel_pytree

from sam_edge.curvature import lanczos
from sam_edge.optim import update
from sam_edge.optim.oracle import Gradients, Oracle
from sam_edge.optim.sam import SamSettings
from sam_edge.pytree import PyTree

KEY_TAG = 0x7ac


def init_tracker(params: PyTree) -> dict:
  """The tracker before the first step: a zero vector (a random start), no refresh pending."""
  flat = ravel_pytree(params)[0]
  return {"vector": jnp.zeros_like(flat), "refresh": jnp.zeros_like(flat),
          "pending": jnp.zeros([], bool)}


def refreshed(tracker: dict, v1: PyTree) -> dict:
  """The tracker with a measurement's top eigenvector v1 to take over after the next step."""
  return {**tracker, "refresh": ravel_pytree(v1)[0].astype(tracker["refresh"].dtype),
          "pending": jnp.ones([], bool)}


def linearize(oracle: Oracle, params: PyTree) -> tuple[tuple, Callable[[PyTree], PyTree]]:
  """((L(w), ∇L(w), aux), v ↦ H v): the gradient and its linearization at w, one primal pass."""
  def gradient(p):
    loss, grad, aux = oracle.value_and_grad(p)
    return grad, (loss, aux)
  grad, hvp, (loss, aux) = jax.linearize(gradient, params, has_aux=True)
  return (loss, grad, aux), hvp


def track(hvp: Callable[[PyTree], PyTree], params: PyTree, grads: Gradients, tracker: dict,
          hvps: int, key: jax.Array) -> tuple[dict, dict]:
  """(the next tracker, {"lambda1_per_step", "lambda1_per_step_residual"[,
  "gradient_curvature"]}) from the step's HVP at `params` and its `grads` (module doc)."""
  flat, unravel = ravel_pytree(params)
  matvec = lambda v: ravel_pytree(hvp(unravel(v.astype(flat.dtype))))[0]
  s = lanczos.lanczos_start(tracker["vector"], key, k=1, max_steps=hvps)
  for _ in range(hvps):                               # unrolled: no while loop on the device
    s = lanczos.lanczos_step(matvec, s, k=1, tol=0.0, min_steps=hvps)
  result = lanczos.lanczos_finish(s, k=1)
  out = {"lambda1_per_step": result.eigenvalues[0],
         "lambda1_per_step_residual": result.residuals[0]}
  if grads.eps is not None:
    norm2 = optax.tree.vdot(grads.eps, grads.eps)
    out["gradient_curvature"] = jnp.where(
        norm2 > 0, optax.tree.vdot(grads.eps, optax.tree.sub(grads.perturbed_grad, grads.grad))
        / jnp.where(norm2 > 0, norm2, 1.0), 0.0)
  vector = jnp.where(tracker["pending"], tracker["refresh"], lanczos.power_step(s))
  return {"vector": vector, "refresh": tracker["refresh"], "pending": jnp.zeros([], bool)}, out


def tracked_update(oracle: Oracle, optimizer: optax.GradientTransformation, sam: SamSettings,
                   state: update.TrainState, tracker: dict, hvps: int,
                   keys: tuple[jax.Array, jax.Array]) -> tuple[update.TrainState, dict, dict]:
  """`update.sam_update` with λ1 tracked: (new state, next tracker, {"loss", and `track`'s}).
  `oracle` is the step's loss on its batch (`Oracle(loss_fn, batch, sam.micro_batches,
  example_losses)`); `keys` are the SAM variant's key of the step and the tracker's
  (`track_key`); the step's first gradient is the linearization's (module doc)."""
  first, hvp = linearize(oracle, state.params)
  grads = update.oracle_gradients(dataclasses.replace(oracle, first=first), state.params, sam,
                                  state=state.sam_state, step=state.step, key=keys[0])
  tracker, out = track(hvp, state.params, grads, tracker, hvps, keys[1])
  return update.apply_gradients(optimizer, state, grads), tracker, {"loss": grads.loss, **out}


def track_key(data_key: jax.Array, step: jax.Array) -> jax.Array:
  """The tracker's key at `step` (its random start and restarts), apart from the batches'."""
  return jax.random.fold_in(jax.random.fold_in(data_key, KEY_TAG), step)
