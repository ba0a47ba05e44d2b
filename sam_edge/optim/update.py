"""Pure update steps: a SAM variant (`sam.SAM_VARIANTS`) in front of any base optimizer (plain
descent when ρ = 0).

    g = ∇L(w),  ε = the variant's perturbation,  g_SAM = ∇L(w + ε),
    w, opt_state ← optimizer.update(g_SAM, opt_state, w)            (any optax base optimizer)

ρ = 0 is decided at trace time (a Python float): it evaluates one gradient and hands ∇L itself to
the optimizer, so it is bitwise the base optimizer.

m-sharpness (`group_size` = m): the batch (leading axis = examples, B of them) is cut into B/m
consecutive groups of m; group j's SAM gradient is ∇L_j(w + ε_j) with ε_j computed from L_j's own
gradient; losses, gradients, SAM gradients and aux are averaged over the groups:

    g_SAM = (m/B) Σ_j ∇L_j(w + ε_j(∇L_j(w))).

Groups are visited with `lax.scan`, so memory is that of one group plus the running sums.

Loss convention: `loss_fn(params, batch) -> (loss, aux)`, where aux is the new model state
(BatchNorm running statistics; `{}` for stateless models) from the *unperturbed* forward pass;
the caller closes over the current model state. Perturbed passes discard their aux, so the model
state changes once per step.
"""

from typing import Any, Callable, NamedTuple, Optional

import jax
import jax.numpy as jnp
import optax

from sam_edge.optim.sam import SamSettings

PyTree = Any
LossFn = Callable[[PyTree, PyTree], tuple[jax.Array, PyTree]]   # (params, batch) -> (loss, aux)


class TrainState(NamedTuple):
  """Everything the update changes."""
  params: PyTree
  opt_state: PyTree
  step: jax.Array          # int32 []
  model_state: PyTree      # non-trainable model variables (BatchNorm statistics); {} if none


def init_state(params: PyTree, optimizer: optax.GradientTransformation,
               model_state: Optional[PyTree] = None) -> TrainState:
  """The state before the first step (`model_state` None means `{}`)."""
  return TrainState(params, optimizer.init(params), jnp.zeros([], jnp.int32),
                    {} if model_state is None else model_state)


class Gradients(NamedTuple):
  loss: jax.Array      # L(w) on the batch
  grad: PyTree         # ∇L(w)
  sam_grad: PyTree     # ∇L(w + ε); the same object as `grad` when ρ = 0
  aux: PyTree          # the new model state, from the unperturbed pass


def _one_group(loss_fn: LossFn, params: PyTree, batch: PyTree, sam: SamSettings) -> Gradients:
  """L, ∇L, the SAM gradient and aux on one batch taken as a single group."""
  (loss, aux), grad = jax.value_and_grad(loss_fn, has_aux=True)(params, batch)
  if sam.rho == 0:
    return Gradients(loss, grad, grad, aux)
  eps = sam.perturbation(params, grad)
  sam_grad, _ = jax.grad(loss_fn, has_aux=True)(optax.tree.add(params, eps), batch)
  return Gradients(loss, grad, sam_grad, aux)


def num_groups(batch: PyTree, group_size: Optional[int]) -> int:
  """B/m, the number of m-sharpness groups (1 for group_size None or m = B); ValueError when the
  batch's leaves disagree on B, or m does not divide B."""
  if group_size is None:
    return 1
  sizes = {jnp.shape(x)[0] if jnp.ndim(x) else None for x in jax.tree.leaves(batch)}
  if len(sizes) != 1 or None in sizes:
    raise ValueError("m-sharpness needs a batch whose arrays share a leading example axis; got "
                     f"leading sizes {sorted(sizes, key=str)}")
  size = sizes.pop()
  if size % group_size:
    raise ValueError(f"the SAM group size {group_size} does not divide the batch size {size}")
  return size // group_size


def sam_gradients(loss_fn: LossFn, params: PyTree, batch: PyTree,
                  sam: SamSettings) -> Gradients:
  """L(w), ∇L(w), the SAM gradient and aux (module doc), averaged over m-sharpness groups.

  ρ = 0 takes one gradient on the whole batch (groups play no part); group_size None or m = B
  is plain SAM, the same program as without groups.
  """
  n = num_groups(batch, sam.group_size)
  if sam.rho == 0 or n == 1:
    return _one_group(loss_fn, params, batch, sam)
  groups = jax.tree.map(lambda x: x.reshape((n, x.shape[0] // n) + x.shape[1:]), batch)
  first = jax.tree.map(lambda x: x[0], groups)
  zeros = jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype),
                       jax.eval_shape(lambda b: _one_group(loss_fn, params, b, sam), first))

  def add_group(total: Gradients, group: PyTree) -> tuple[Gradients, None]:
    return jax.tree.map(jnp.add, total, _one_group(loss_fn, params, group, sam)), None

  total, _ = jax.lax.scan(add_group, zeros, groups)
  return jax.tree.map(lambda x: x / jnp.asarray(n, x.dtype), total)


def sam_update(loss_fn: LossFn, optimizer: optax.GradientTransformation, sam: SamSettings,
               state: TrainState, batch: PyTree) -> tuple[TrainState, jax.Array]:
  """One step: returns `(new_state, L(w) on the batch)`.

  The optimizer receives the SAM gradient (∇L when ρ = 0); the model state becomes the aux of
  the unperturbed pass (averaged over groups with m-sharpness). `loss_fn` reads
  `state.model_state` through its closure.
  """
  grads = sam_gradients(loss_fn, state.params, batch, sam)
  updates, opt_state = optimizer.update(grads.sam_grad, state.opt_state, state.params)
  params = optax.apply_updates(state.params, updates)
  return TrainState(params, opt_state, state.step + 1, grads.aux), grads.loss
