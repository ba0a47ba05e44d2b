"""What the SAM variants' directions share (`variant`, `variants/`): the step's key, the
restriction R to the perturbed parameters, SAM's ascent step and the direction of a variant given
by its perturbation alone.

With g = ∇L(w) from the batch's `oracle.Oracle` (the batch whole, or summed over its
micro-batches: every ∇L is one pass over them), ε_ρ(v) = ρ v/(‖v‖ + 1e-5) and R the restriction
to the perturbed parameters (the identity; with --sam_params=normalization, zero outside the
normalisation layers, `models.normalization`):

  perturbed  ε = R ε_var(w, R g),  d = ∇L(w + ε)                                    2 gradients

g is the oracle's `first` when the caller has it (`curvature.tracking`); the directions that take
∇L(w + ε) on the whole batch also return ε and it (`Gradients.eps`, `.perturbed_grad`), which
give the curvature along ε for free.

The random draws (ESAM's M, Random-SAM's δ₀) come from the step's key `step_key(data key, t)`,
a pure function of (seed, step): a resumed run draws what an uninterrupted one does, and a
measurement at step t sees the draws of step t.
"""

from typing import Any, Callable, Optional

import jax
import jax.numpy as jnp
import optax

from sam_edge import trees
from sam_edge.models import normalization
from sam_edge.optim.oracle import Gradients, Oracle
from sam_edge.pytree import PyTree

SAM_TAG = 0x73616d21     # b"sam!" as an integer: far above the epochs `batching` folds in
SAM_NORM_EPS = 1e-5


def step_key(data_key: jax.Array, step: jax.Array | int) -> jax.Array:
  """fold_in(fold_in(data_key, SAM_TAG), step): the SAM variants' key for `step`."""
  return jax.random.fold_in(jax.random.fold_in(data_key, SAM_TAG), step)


def restriction(params: PyTree, perturbed: str) -> Callable[[PyTree], PyTree]:
  """R: the identity for "all"; for "normalization" the map that zeroes every leaf outside the
  normalisation layers (ValueError when the model has none)."""
  if perturbed == "all":
    return lambda tree: tree
  keep = normalization.mask(params)
  if not any(jax.tree.leaves(keep)):
    raise ValueError("--sam_params=normalization: the model has no normalisation layers")
  return lambda tree: jax.tree.map(lambda k, x: x if k else jnp.zeros_like(x), keep, tree)


def normalized(v: PyTree, rho: Any) -> PyTree:
  """ε_ρ(v) (module doc; 0 for v = 0)."""
  direction, _ = trees.safe_normalize(v, eps=SAM_NORM_EPS)
  return optax.tree.scale(rho, direction)


def ascent(sam: Any, params: PyTree, v: PyTree, rho: Any = None) -> PyTree:
  """R ε_ρ(R v), ρ the settings' unless given."""
  restrict = restriction(params, sam.perturbed)
  return restrict(normalized(restrict(v), sam.rho if rho is None else rho))


def need_key(key: Optional[jax.Array]) -> jax.Array:
  """The step's key; ValueError without one."""
  if key is None:
    raise ValueError("this SAM variant draws at random: its step needs the step's key")
  return key


def leaf_keys(key: jax.Array, tree: PyTree) -> PyTree:
  """One independent key per leaf of `tree`."""
  leaves, treedef = jax.tree.flatten(tree)
  return jax.tree.unflatten(treedef, list(jax.random.split(key, len(leaves))))


def perturbed_direction(perturbation: Callable[..., PyTree], sam: Any, oracle: Oracle,
                        params: PyTree, state: PyTree) -> Gradients:
  """d = ∇L(w + R ε(w, R g)) for a perturbation ε(w, g, ρ, values) (module doc)."""
  restrict = restriction(params, sam.perturbed)
  loss, g, aux = oracle.first_gradient(params)
  eps = restrict(perturbation(params, restrict(g), sam.rho, sam.values))
  perturbed_grad = oracle.grad(optax.tree.add(params, eps))
  return Gradients(loss, g, perturbed_grad, aux, state, eps, perturbed_grad)
