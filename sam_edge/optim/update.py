"""Pure update steps: a SAM variant (`sam.SAM_VARIANTS`) in front of any base optimizer (plain
descent when ρ = 0).

    d = the variant's direction (`variant`; ∇L(w + ε) for plain SAM),
    w, opt_state ← optimizer.update(d, opt_state, w)              (any optax base optimizer)

ρ = 0 is decided at trace time (a Python float): it evaluates one gradient and hands ∇L itself to
the optimizer, so it is bitwise the base optimizer, and leaves the variant's state as it is.

--accumulate_batches = k: every gradient is the mean over k micro-batches (`oracle`), so memory
is that of one micro-batch; the variant's step is unchanged (normalized SAM's ascent direction
comes from the accumulated g, so it takes two passes over the micro-batches).

m-sharpness (`group_size` = m): the batch (leading axis = examples, B of them) is cut into B/m
consecutive groups of m; group j takes the variant's step on its own, its ε_j computed from L_j's
own gradient; losses, gradients, directions and aux are averaged over the groups:

    d = (m/B) Σ_j d_j,   d_j = ∇L_j(w + ε_j(∇L_j(w))) for a variant given by its perturbation.

Groups are visited with `lax.scan`, so memory is that of one group plus the running sums.

Loss convention: `loss_fn(params, batch) -> (loss, aux)`, where aux is the new model state
(BatchNorm running statistics; `{}` for stateless models) from the *unperturbed* forward pass;
the caller closes over the current model state. Perturbed passes discard their aux, so the model
state changes once per step.
"""

import dataclasses
from typing import Any, Callable, NamedTuple, Optional

import jax
import jax.numpy as jnp
import optax

from sam_edge import options
from sam_edge.optim import ema
from sam_edge.optim.oracle import Gradients, LossFn, Oracle, host_loops, mean_over
from sam_edge.optim.sam import SamSettings
from sam_edge.pytree import PyTree

ExampleLosses = Callable[[PyTree, PyTree], jax.Array]   # (params, batch) -> per-example losses


class TrainState(NamedTuple):
  """Everything the update changes."""
  params: PyTree
  opt_state: PyTree
  step: jax.Array          # int32 []
  model_state: PyTree      # non-trainable model variables (BatchNorm statistics); {} if none
  sam_state: PyTree = {}   # the SAM variant's state (Friendly-SAM's m, LookSAM's g_v); {} if none
  ema: PyTree = {}         # the weights' moving average {"params", "model_state"} (`ema`); {}: off
  best: PyTree = {}        # {"params", "model_state"} of the best evaluation (`run.monitor`, set
                           # between steps, copied); {}: not kept


def init_state(params: PyTree, optimizer: optax.GradientTransformation,
               model_state: Optional[PyTree] = None,
               sam: Optional[SamSettings] = None, *, average: bool = False,
               keep_best: bool = False) -> TrainState:
  """The state before the first step (`model_state` None means `{}`; `sam` gives the variant's
  first state, {} without one; `average` starts the weights' moving average, w̄_0 = w_0;
  `keep_best` keeps the best evaluation's weights, w_0 until there is one)."""
  model_state = {} if model_state is None else model_state
  return TrainState(params, optimizer.init(params), jnp.zeros([], jnp.int32), model_state,
                    {} if sam is None else sam.variant.init(params),
                    ema.init(params, model_state) if average else {},
                    ema.init(params, model_state) if keep_best else {})


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


def sam_gradients(loss_fn: LossFn, params: PyTree, batch: PyTree, sam: SamSettings, *,
                  state: Optional[PyTree] = None, step: Any = 0,
                  key: Optional[jax.Array] = None,
                  example_losses: Optional[ExampleLosses] = None) -> Gradients:
  """`oracle_gradients` with the oracle of `loss_fn` on `batch` (its micro-batches `sam`'s;
  `example_losses` the per-example losses for ESAM)."""
  return oracle_gradients(Oracle(loss_fn, batch, sam.micro_batches, example_losses), params, sam,
                          state=state, step=step, key=key)


def oracle_gradients(oracle: Oracle, params: PyTree, sam: SamSettings, *,
                     state: Optional[PyTree] = None, step: Any = 0,
                     key: Optional[jax.Array] = None) -> Gradients:
  """L(w), ∇L(w), the direction d the base optimizer sees, aux and the variant's next state
  (module doc), averaged over m-sharpness groups; with the whole batch as one group also ε and
  ∇L(w + ε) where the variant took them (`oracle.Gradients`).

  `state` is the variant's state ({} or None for none), `step` the step t being taken, `key` the
  step's key (`sam_steps.step_key`) for the variants that draw at random; the oracle's `first`
  (L(w), ∇L(w), aux on the whole batch) replaces the first pass (groups ignore it). ρ = 0 takes
  one gradient (over the micro-batches) and groups play no part; group_size None or m = B is the
  variant on the whole batch, the same program as without groups. ValueError for settings with
  problems (`sam.SamSettings.problems`).
  """
  options.refuse(sam.problems())
  state = {} if state is None else state
  if sam.rho == 0:
    loss, grad, aux = oracle.first_gradient(params)
    return Gradients(loss, grad, grad, aux, state)
  direction = sam.variant.direction
  n = num_groups(oracle.batch, sam.group_size)
  if n == 1:
    return direction(sam, oracle, params, state, key, step)
  groups = jax.tree.map(lambda x: x.reshape((n, x.shape[0] // n) + x.shape[1:]), oracle.batch)
  return mean_over(lambda group: direction(   # each group has its own ε: none kept
      sam, dataclasses.replace(oracle, batch=group, first=None), params, state, key,
      step)._replace(eps=None, perturbed_grad=None), groups)


def apply_gradients(optimizer: optax.GradientTransformation, state: TrainState,
                    grads: Gradients) -> TrainState:
  """The base optimizer's step along grads.direction; the model state becomes grads.aux, the
  variant's state grads.sam_state, and the step advances (the moving average is the caller's:
  `ema.updated`)."""
  updates, opt_state = optimizer.update(grads.direction, state.opt_state, state.params)
  params = optax.apply_updates(state.params, updates)
  return state._replace(params=params, opt_state=opt_state, step=state.step + 1,
                        model_state=grads.aux, sam_state=grads.sam_state)


def sam_update(loss_fn: LossFn, optimizer: optax.GradientTransformation, sam: SamSettings,
               state: TrainState, batch: PyTree, *, key: Optional[jax.Array] = None,
               example_losses: Optional[ExampleLosses] = None
               ) -> tuple[TrainState, jax.Array]:
  """One step: returns `(new_state, L(w) on the batch)`.

  The optimizer receives the variant's direction (∇L when ρ = 0); the model state becomes the
  aux of the unperturbed pass (averaged over groups or micro-batches), the variant's state its
  next one. `loss_fn` reads `state.model_state` through its closure; `key` and `example_losses`
  as in `sam_gradients`.
  """
  grads = sam_gradients(loss_fn, state.params, batch, sam, state=state.sam_state,
                        step=state.step, key=key, example_losses=example_losses)
  return apply_gradients(optimizer, state, grads), grads.loss


def host_phased(make: Callable[[SamSettings], Any], sam: SamSettings) -> Callable[[int], Any]:
  """`t -> make(sam)`, the training step `make` compiles for the SAM settings `sam` and host step
  t: one for every t or, where branches run on the host (`oracle.host_loops`: the CPU) and the
  variant has two steps (`SamSettings.host_period` k: LookSAM), its phase True step for
  t ≡ 0 (mod k) and its phase False step otherwise, each compiled once."""
  period = sam.host_period() if host_loops() else None
  if period is None:
    step = make(sam)
    return lambda t: step
  phased = {phase: make(dataclasses.replace(sam, phase=phase)) for phase in (True, False)}
  return lambda t: phased[t % period == 0]
