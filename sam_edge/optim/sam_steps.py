"""How each SAM variant computes d, the gradient the base optimizer sees (`sam.SAM_VARIANTS` names
these steps; a variant given by its perturbation alone takes `perturbed`).

A step reads a `Step` and returns `oracle.Gradients`, the variant's next state included. With
g = ∇L(w) from the batch's `oracle.Oracle` (the batch whole, or summed over its micro-batches:
every ∇L below is one pass over them), ε_ρ(v) = ρ v/(‖v‖ + 1e-5) and R the restriction to the
perturbed parameters (the identity; with --sam_params=normalization, zero outside the
normalisation layers, `models.normalization`):

  perturbed  ε = R ε_var(w, R g),  d = ∇L(w + ε)                                    2 gradients
  gsam       g_p = ∇L(w + R ε_ρt(R g)), g_⊥ = g − (g·ĝ_p) ĝ_p,  d = g_p − α g_⊥              2
             ρ_t = ρ_min + (ρ − ρ_min)(η_t − η_min)/(η_max − η_min) with --gsam_rho_schedule=ρ_min
  looksam    steps t ≡ 0 (mod k): g_p = ∇L(w + R ε_ρ(R g)), d = g_p, g_v ← g_p − (g_p·ĝ)ĝ     2
             other steps: d = g + α (‖g‖/‖g_v‖) g_v (g for g_v = 0); with `Step.phase`   1
             None a `lax.cond` on t mod k (only the branch taken runs), else the branch
             it names, fixed at trace time (`SamSettings.host_period`: two compiled steps
             chosen on the host, since XLA on the CPU runs convolution gradients inside
             a `cond` several times slower)
  esam       M_i ~ Bernoulli(β) per weight, ε = R (M ⊙ ε_ρ(R g))/β; S = the round(γB)    1 + γ,
             examples with the largest L_i(w + ε) − L_i(w); d = ∇L_S(w + ε)      2 forward passes
  friendly   m ← λ m + (1 − λ) g,  ε = R ε_ρ(R(g − σ m)),  d = ∇L(w + ε); state {m}          2
  random     δ = R δ₀, δ₀ ~ N(0, σ²I);  ε = δ + R ε_λρ(R ∇L(w + δ)),  d = ∇L(w + ε)          3

g is the caller's when it has it (`Step.first`: the tracked training step's linearization of the
gradient, `curvature.tracking`); the steps that take ∇L(w + ε) on the whole batch also return ε
and it (`Gradients.eps`, `.shifted`), which give the curvature along ε for free.

The random draws (ESAM's M, Random-SAM's δ₀) come from the step's key `step_key(data key, t)`,
a pure function of (seed, step): a resumed run draws what an uninterrupted one does, and a
measurement at step t sees the draws of step t.
"""

from typing import Any, Callable, NamedTuple, Optional

import jax
import jax.numpy as jnp
import optax

from sam_edge import trees
from sam_edge.data import batching
from sam_edge.models import normalization
from sam_edge.optim import perturbations, schedules
from sam_edge.optim.oracle import Gradients, Oracle

PyTree = Any
SAM_TAG = 0x73616d21     # b"sam!" as an integer: far above the epochs `batching` folds in


class Step(NamedTuple):
  """What a variant's step reads."""
  oracle: Oracle               # L, ∇L and aux on the batch
  params: PyTree               # w
  rho: float                   # ρ > 0
  hyper: dict                  # the variant's own flag values
  state: PyTree                # its state ({} for none)
  step: jax.Array              # t, the step being taken
  key: Optional[jax.Array]     # the step's key (`step_key`)
  restrict: Callable[[PyTree], PyTree]                 # R (module doc)
  example_losses: Optional[Callable[[PyTree, PyTree], jax.Array]]   # (w, batch) -> [B]
  schedule: Any                # `optimizers.OptimizerSettings`, for a ρ that follows η
  first: Optional[tuple] = None  # (L(w), ∇L(w), aux) when the caller already has them
  phase: Optional[bool] = None   # LookSAM: a SAM step (True), a reuse step (False), or None


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


def first_gradient(s: Step) -> tuple[jax.Array, PyTree, PyTree]:
  """(L(w), ∇L(w), aux): the caller's `first` when given (the tracked training step linearizes
  the gradient and hands it over), else one pass of the oracle."""
  return s.first if s.first is not None else s.oracle.value_and_grad(s.params)


def _ascent(s: Step, v: PyTree, rho: Any = None) -> PyTree:
  """R ε_ρ(R v)."""
  return s.restrict(perturbations.normalized(s.params, s.restrict(v),
                                                s.rho if rho is None else rho, s.hyper))


def _key(s: Step) -> jax.Array:
  if s.key is None:
    raise ValueError("this SAM variant draws at random: its step needs the step's key")
  return s.key


def _leaf_keys(key: jax.Array, tree: PyTree) -> PyTree:
  """One independent key per leaf of `tree`."""
  leaves, treedef = jax.tree.flatten(tree)
  return jax.tree.unflatten(treedef, list(jax.random.split(key, len(leaves))))


def perturbed(perturbation: Callable[..., PyTree]) -> Callable[[Step], Gradients]:
  """The step of a variant given by its perturbation ε(w, g, ρ, hyper): d = ∇L(w + R ε(w, R g))."""
  def step(s: Step) -> Gradients:
    loss, g, aux = first_gradient(s)
    eps = s.restrict(perturbation(s.params, s.restrict(g), s.rho, s.hyper))
    shifted = s.oracle.grad(optax.tree.add(s.params, eps))
    return Gradients(loss, g, shifted, aux, s.state, eps, shifted)
  return step


def gsam_rho(s: Step) -> Any:
  """ρ_t (module doc): ρ itself without --gsam_rho_schedule."""
  rho_min, o = s.hyper["gsam_rho_schedule"], s.schedule
  if rho_min is None:
    return s.rho
  low, high = schedules.extremes(o.schedule, o.step_size, warmup_steps=o.warmup_steps,
                                 total_steps=o.total_steps, boundaries=o.boundaries,
                                 factor=o.factor)
  eta = schedules.step_size_at(o.learning_rate(), s.step)
  return rho_min + (s.rho - rho_min) * (eta - low) / (high - low)


def gsam(s: Step) -> Gradients:
  """d = g_p − α g_⊥ (module doc)."""
  loss, g, aux = first_gradient(s)
  eps = _ascent(s, g, gsam_rho(s))
  g_p = s.oracle.grad(optax.tree.add(s.params, eps))
  unit_p, _ = trees.safe_normalize(g_p)
  g_perp = optax.tree.add_scale(g, -optax.tree.vdot(g, unit_p), unit_p)
  return Gradients(loss, g, optax.tree.add_scale(g_p, -s.hyper["gsam_alpha"], g_perp), aux,
                   s.state, eps, g_p)


def looksam_init(params: PyTree) -> dict:
  """g_v = 0 before the first SAM step."""
  return {"g_v": jax.tree.map(jnp.zeros_like, params)}


def looksam(s: Step) -> Gradients:
  """Every k-th step SAM's gradient (keeping g_v), else g + α (‖g‖/‖g_v‖) g_v (module doc)."""
  every, alpha = s.hyper["looksam_every"], s.hyper["looksam_alpha"]
  loss, g, aux = first_gradient(s)

  def sam_step(_):
    g_p = s.oracle.grad(optax.tree.add(s.params, _ascent(s, g)))
    unit, _ = trees.safe_normalize(g)
    return g_p, {"g_v": optax.tree.add_scale(g_p, -optax.tree.vdot(g_p, unit), unit)}

  def reuse(_):
    g_v = s.state["g_v"]
    norm_v = optax.tree.norm(g_v)
    scale = jnp.where(norm_v > 0, alpha * optax.tree.norm(g) / jnp.where(norm_v > 0, norm_v, 1.0),
                      0.0)
    return optax.tree.add_scale(g, scale, g_v), s.state

  if every == 1 or s.phase is True:
    d, state = sam_step(None)
  elif s.phase is False:
    d, state = reuse(None)
  else:
    d, state = jax.lax.cond(s.step % every == 0, sam_step, reuse, None)
  return Gradients(loss, g, d, aux, state)


def esam(s: Step) -> Gradients:
  """Bernoulli(β) weights perturbed by ε/β, the second gradient on the fraction γ of the batch
  whose loss rose most (module doc)."""
  beta, gamma = s.hyper["esam_weight_fraction"], s.hyper["esam_example_fraction"]
  if s.example_losses is None:
    raise ValueError("--sam=esam needs the per-example losses")
  loss, g, aux = first_gradient(s)
  full = perturbations.normalized(s.params, s.restrict(g), s.rho, s.hyper)
  eps = s.restrict(jax.tree.map(
      lambda k, e: jnp.where(jax.random.bernoulli(k, beta, e.shape), e / beta, jnp.zeros_like(e)),
      _leaf_keys(_key(s), full), full))
  adversary = optax.tree.add(s.params, eps)
  batch = s.oracle.batch
  rise = s.example_losses(adversary, batch) - s.example_losses(s.params, batch)    # [B]
  count = max(1, int(gamma * batching.num_examples(batch) + 0.5))
  _, chosen = jax.lax.top_k(rise, count)
  d = jax.grad(s.oracle.loss_fn, has_aux=True)(adversary, batching.take(batch, chosen))[0]
  return Gradients(loss, g, d, aux, s.state)


def friendly_init(params: PyTree) -> dict:
  """m = 0 before the first step."""
  return {"m": jax.tree.map(jnp.zeros_like, params)}


def friendly(s: Step) -> Gradients:
  """m ← λ m + (1 − λ) g, ε = R ε_ρ(R(g − σ m)) (module doc)."""
  sigma, lam = s.hyper["friendly_sigma"], s.hyper["friendly_lambda"]
  loss, g, aux = first_gradient(s)
  m = jax.tree.map(lambda m, gi: lam * m + (1.0 - lam) * gi, s.state["m"], g)
  eps = _ascent(s, jax.tree.map(lambda gi, mi: gi - sigma * mi, g, m))
  shifted = s.oracle.grad(optax.tree.add(s.params, eps))
  return Gradients(loss, g, shifted, aux, {"m": m}, eps, shifted)


def random_sam(s: Step) -> Gradients:
  """δ ~ N(0, σ²I), then the ascent step of length λρ from w + δ (module doc)."""
  sigma, lam = s.hyper["random_sam_sigma"], s.hyper["random_sam_lambda"]
  loss, g, aux = first_gradient(s)
  delta = s.restrict(jax.tree.map(lambda k, w: sigma * jax.random.normal(k, w.shape, w.dtype),
                                  _leaf_keys(_key(s), s.params), s.params))
  smoothed = s.oracle.grad(optax.tree.add(s.params, delta))
  eps = optax.tree.add(delta, _ascent(s, smoothed, lam * s.rho))
  shifted = s.oracle.grad(optax.tree.add(s.params, eps))
  return Gradients(loss, g, shifted, aux, s.state, eps, shifted)
