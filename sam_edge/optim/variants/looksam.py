"""LookSAM (Liu et al. 2022): every k-th step d = g_p = ∇L(w + ρg/‖g‖) and
g_v ← g_p − (g_p·ĝ)ĝ; between, d = g + α(‖g‖/‖g_v‖)g_v at the cost of one gradient,
k = --looksam_every, α = --looksam_alpha.

In full, with g = ∇L(w), R and ε_ρ as in `sam_steps`,

    steps t ≡ 0 (mod k): g_p = ∇L(w + R ε_ρ(R g)), d = g_p, g_v ← g_p − (g_p·ĝ)ĝ     2 gradients
    other steps:         d = g + α (‖g‖/‖g_v‖) g_v (g for g_v = 0)                   1

state {g_v}, 0 before the first SAM step. With `sam.SamSettings.phase` None the kind of step is a
`lax.cond` on t mod k (only the branch taken runs), else the branch it names, fixed at trace time
(`host_period`: two compiled steps chosen on the host where branches run there,
`update.host_phased`). Edge: none known (None).
"""

from typing import Any, Optional

from sam_edge import options
from sam_edge.optim import variant


def whole_positive(x: Any) -> Optional[str]:
  """x an integer >= 1."""
  return None if isinstance(x, int) and not isinstance(x, bool) and x >= 1 else (
      "must be an integer >= 1")


LOOKSAM_EVERY = options.Option("looksam_every", 5, "k of LookSAM (--sam=looksam; Liu et al.: 5).",
                               check=whole_positive)
LOOKSAM_ALPHA = options.Option("looksam_alpha", 0.7, "α of LookSAM (--sam=looksam; Liu et al.: "
                               "0.7).", check=options.non_negative)


def init(params: Any) -> dict:
  """g_v = 0 before the first SAM step."""
  import jax  # pylint: disable=import-outside-toplevel  (variant doc)
  import jax.numpy as jnp  # pylint: disable=import-outside-toplevel
  return {"g_v": jax.tree.map(jnp.zeros_like, params)}


def host_period(sam: Any) -> Optional[int]:
  """k when the two kinds of step are compiled apart and chosen on the host: phase None, k > 1."""
  every = sam.values["looksam_every"]
  return every if sam.phase is None and every > 1 else None


def direction(sam: Any, oracle: Any, params: Any, state: Any, key: Any, step: Any) -> Any:
  """Every k-th step SAM's gradient (keeping g_v), else g + α (‖g‖/‖g_v‖) g_v (module doc)."""
  import jax  # pylint: disable=import-outside-toplevel  (variant doc)
  import jax.numpy as jnp  # pylint: disable=import-outside-toplevel
  import optax  # pylint: disable=import-outside-toplevel

  from sam_edge import trees  # pylint: disable=import-outside-toplevel
  from sam_edge.optim import oracle as oracles  # pylint: disable=import-outside-toplevel
  from sam_edge.optim import sam_steps  # pylint: disable=import-outside-toplevel
  every, alpha = sam.values["looksam_every"], sam.values["looksam_alpha"]
  loss, g, aux = oracle.first_gradient(params)

  def sam_step(_):
    g_p = oracle.grad(optax.tree.add(params, sam_steps.ascent(sam, params, g)))
    unit, _ = trees.safe_normalize(g)
    return g_p, {"g_v": optax.tree.add_scale(g_p, -optax.tree.vdot(g_p, unit), unit)}

  def reuse(_):
    g_v = state["g_v"]
    norm_v = optax.tree.norm(g_v)
    scale = jnp.where(norm_v > 0, alpha * optax.tree.norm(g) / jnp.where(norm_v > 0, norm_v, 1.0),
                      0.0)
    return optax.tree.add_scale(g, scale, g_v), state

  if every == 1 or sam.phase is True:
    d, state = sam_step(None)
  elif sam.phase is False:
    d, state = reuse(None)
  else:
    d, state = jax.lax.cond(step % every == 0, sam_step, reuse, None)
  return oracles.Gradients(loss, g, d, aux, state)


VARIANT = variant.Variant(
    "looksam", options.doc_summary(__doc__), (LOOKSAM_EVERY, LOOKSAM_ALPHA), "LookSAM",
    direction, init=init, host_period=host_period)
