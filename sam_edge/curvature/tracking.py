"""λ1 at every training step (`--track_every_step`), for a few HVPs per step.

At step t, on the step's own batch and loss L_t, a Lanczos of `hvps` steps (`lanczos`, k = 1)
starts from the tracker's vector, the Ritz vector of step t − 1, and gives λ1(H_t) with its
residual ||H_t y − λ1 y||; its Ritz vector starts step t + 1. Between steps the parameters move a
little, so the warm vector is already close to the top eigenvector and a few HVPs keep it there.
A scheduled measurement (a full Lanczos) refreshes the vector: its v1 replaces the tracker's
after the step it was taken at, so the value tracked at a measured step owes nothing to that
measurement and can be compared with it.

The HVPs come from one linearization of the gradient at w_t (`jax.linearize`), inside the jitted
training step beside the update's own gradient of the same loss on the same batch; XLA computes
the shared forward and backward pass once, and each HVP costs its tangent passes.

With SAM (ρ > 0) the step also computes ∇L(w) and ∇L(w + ε); along ε their difference is a
finite-difference curvature at no extra HVP,

    gradient_curvature = εᵀ (∇L(w + ε) − ∇L(w)) / ||ε||²  ≈  ε̂ᵀ H ε̂,

the curvature of the loss along the ascent direction (ĝᵀHĝ for normalized SAM).
"""

from typing import Any

import jax
import jax.numpy as jnp
import optax
from jax.flatten_util import ravel_pytree

from sam_edge.curvature import lanczos
from sam_edge.optim.sam import SamSettings

PyTree = Any
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


def track(loss_fn: Any, sam: SamSettings, params: PyTree, batch: PyTree, tracker: dict,
          hvps: int, key: jax.Array) -> tuple[dict, dict]:
  """(the next tracker, {"lambda1_per_step", "lambda1_per_step_residual"[,
  "gradient_curvature"]}) at `params` on `batch` (module doc); `loss_fn(params, batch)` returns
  (loss, aux) as the update's loss does."""
  flat, unravel = ravel_pytree(params)
  gradient = lambda p: jax.grad(lambda q: loss_fn(q, batch)[0])(p)
  grad, linear = jax.linearize(gradient, params)
  matvec = lambda v: ravel_pytree(linear(unravel(v.astype(flat.dtype))))[0]
  s = lanczos.lanczos_start(tracker["vector"], key, k=1, max_steps=hvps)
  for _ in range(hvps):                               # unrolled: no while loop on the device
    s = lanczos.lanczos_step(matvec, s, k=1, tol=0.0, min_steps=hvps)
  result = lanczos.lanczos_finish(s, k=1)
  out = {"lambda1_per_step": result.eigenvalues[0],
         "lambda1_per_step_residual": result.residuals[0]}
  if sam.rho > 0:
    eps = sam.perturbation(params, grad)
    shifted = gradient(optax.tree.add(params, eps))
    norm2 = optax.tree.vdot(eps, eps)
    out["gradient_curvature"] = jnp.where(
        norm2 > 0, optax.tree.vdot(eps, optax.tree.sub(shifted, grad))
        / jnp.where(norm2 > 0, norm2, 1.0), 0.0)
  vector = jnp.where(tracker["pending"], tracker["refresh"], result.vectors[0])
  return {"vector": vector, "refresh": tracker["refresh"], "pending": jnp.zeros([], bool)}, out


def track_key(data_key: jax.Array, step: jax.Array) -> jax.Array:
  """The tracker's key at `step` (its random start and restarts), apart from the batches'."""
  return jax.random.fold_in(jax.random.fold_in(data_key, KEY_TAG), step)
