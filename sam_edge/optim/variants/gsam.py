"""GSAM (Zhuang et al. 2022): d = g_p − α g_⊥, g_p = ∇L(w + ρ_t g/‖g‖), g_⊥ = g − (g·ĝ_p)ĝ_p,
α = --gsam_alpha, ρ_t = ρ unless --gsam_rho_schedule.

In full, with g = ∇L(w), R and ε_ρ as in `sam_steps`,

    g_p = ∇L(w + R ε_ρt(R g)),  g_⊥ = g − (g·ĝ_p) ĝ_p,  d = g_p − α g_⊥           2 gradients

and ρ_t as `rho_at` gives it. Edge: none known (None).
"""

from typing import Any

from sam_edge import options
from sam_edge.optim import variant

GSAM_ALPHA = options.Option("gsam_alpha", 0.1, "α of GSAM (--sam=gsam; α = 0 is normalized SAM; "
                            "Zhuang et al. use 0.01 to 0.3).", check=options.non_negative)


def problems(sam: Any) -> list[str]:
  """--gsam_rho_schedule: ρ_min ≤ ρ, and a schedule whose step size changes."""
  rho_min = sam.values["gsam_rho_schedule"]
  if rho_min is None:
    return []
  if rho_min > sam.rho:
    return [f"--gsam_rho_schedule={rho_min:g} (ρ_min) must be at most --rho={sam.rho:g}"]
  if sam.step_sizes is None:
    return ["--gsam_rho_schedule needs the step-size schedule it follows"]
  low, high = sam.step_sizes.extremes()
  if low == high:
    return ["--gsam_rho_schedule needs a step size that changes (--lr_schedule=cosine|step or "
            "--warmup_steps >= 2)"]
  return []


def rho_at(sam: Any, step: Any) -> Any:
  """ρ_t = ρ_min + (ρ − ρ_min)(η_t − η_min)/(η_max − η_min), η_min and η_max the schedule's
  smallest and largest step sizes.

  ρ_min is --gsam_rho_schedule (`sam.SamSettings.step_sizes` the schedule); ρ itself without
  it."""
  rho_min, eta_t = sam.values["gsam_rho_schedule"], sam.step_sizes
  if rho_min is None:
    return sam.rho
  from sam_edge.optim import schedules  # pylint: disable=import-outside-toplevel  (variant doc)
  low, high = eta_t.extremes()
  eta = schedules.step_size_at(eta_t.learning_rate(), step)
  return rho_min + (sam.rho - rho_min) * (eta - low) / (high - low)


def direction(sam: Any, oracle: Any, params: Any, state: Any, key: Any, step: Any) -> Any:
  """d = g_p − α g_⊥ (module doc)."""
  import optax  # pylint: disable=import-outside-toplevel  (variant doc)

  from sam_edge import trees  # pylint: disable=import-outside-toplevel
  from sam_edge.optim import oracle as oracles  # pylint: disable=import-outside-toplevel
  from sam_edge.optim import sam_steps  # pylint: disable=import-outside-toplevel
  loss, g, aux = oracle.first_gradient(params)
  eps = sam_steps.ascent(sam, params, g, rho_at(sam, step))
  g_p = oracle.grad(optax.tree.add(params, eps))
  unit_p, _ = trees.safe_normalize(g_p)
  g_perp = optax.tree.add_scale(g, -optax.tree.vdot(g, unit_p), unit_p)
  return oracles.Gradients(loss, g, optax.tree.add_scale(g_p, -sam.values["gsam_alpha"], g_perp),
                           aux, state, eps, g_p)


GSAM_RHO_SCHEDULE = options.Option(
    "gsam_rho_schedule", None, "ρ_min: GSAM's ρ follows the step-size schedule, "
    + options.doc_summary(rho_at.__doc__).rstrip(".") + " (default: ρ constant).", type=float,
    check=options.non_negative)

VARIANT = variant.Variant(
    "gsam", options.doc_summary(__doc__),
    (GSAM_ALPHA, GSAM_RHO_SCHEDULE), "GSAM", direction, groups=True, problems=problems)
