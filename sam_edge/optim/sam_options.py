"""The SAM variants' own flags (`sam.SAM_VARIANTS` declares which variant owns which), with their
defaults from the papers' released code, and the problems of a combination of SAM settings, one
line each naming the flags. Imports neither jax nor absl (module doc of `sam`).
"""

from typing import Any, Mapping, Optional

from sam_edge import options
from sam_edge.options import Option

Hyper = Mapping[str, Any]
PERTURBED = ("all", "normalization")                                    # --sam_params
FRACTION = options.interval(0, 1, low_open=True, high_open=False)      # (0, 1]


def whole_positive(x: Any) -> Optional[str]:
  """x an integer >= 1."""
  return None if isinstance(x, int) and not isinstance(x, bool) and x >= 1 else (
      "must be an integer >= 1")


ASAM_XI = Option("asam_xi", 0.01, "ξ of ASAM's T = |w| + ξ (Kwon et al.: 0.01).",
                 check=options.non_negative)
FISHER_ETA = Option("fisher_eta", 1.0, "η_f of Fisher-SAM's diagonal Fisher estimate "
                    "f = 1 + η_f g⊙g (Kim et al.'s code: 1).", check=options.non_negative)
GSAM_ALPHA = Option("gsam_alpha", 0.1, "α of GSAM: d = g_p − α g_⊥ (α = 0 is normalized SAM; "
                    "Zhuang et al. use 0.01 to 0.3).", check=options.non_negative)
GSAM_RHO_SCHEDULE = Option(
    "gsam_rho_schedule", None, "ρ_min: GSAM's ρ follows the step-size schedule, ρ_t = ρ_min + "
    "(ρ − ρ_min)(η_t − η_min)/(η_max − η_min), η_min and η_max the schedule's smallest and "
    "largest step sizes (default: ρ constant).", type=float, check=options.non_negative)
LOOKSAM_EVERY = Option("looksam_every", 5, "k of LookSAM: the SAM gradient every k steps "
                       "(Liu et al.: 5).", check=whole_positive)
LOOKSAM_ALPHA = Option("looksam_alpha", 0.7, "α of LookSAM (Liu et al.: 0.7).",
                       check=options.non_negative)
ESAM_WEIGHT_FRACTION = Option("esam_weight_fraction", 0.5, "β of ESAM, in (0, 1]: each weight is "
                              "perturbed with probability β, by ε/β (Du et al.: 0.5 to 0.6).",
                              check=FRACTION)
ESAM_EXAMPLE_FRACTION = Option("esam_example_fraction", 0.5, "γ of ESAM, in (0, 1]: the second "
                               "gradient is taken on the round(γB) examples whose loss rose most "
                               "under the perturbation (Du et al.: 0.5).", check=FRACTION)
FRIENDLY_SIGMA = Option("friendly_sigma", 1.0, "σ of Friendly-SAM (Li et al.: 1).",
                        check=options.non_negative)
FRIENDLY_LAMBDA = Option("friendly_lambda", 0.95, "λ of Friendly-SAM's gradient average m, in "
                         "[0, 1) (Li et al.'s released runs: 0.95).",
                         check=options.interval(0, 1))
RANDOM_SAM_SIGMA = Option("random_sam_sigma", 0.01, "σ of Random-SAM: δ ~ N(0, σ²I), σ per "
                          "weight.", check=options.non_negative)
RANDOM_SAM_LAMBDA = Option("random_sam_lambda", 1.0, "λ of Random-SAM: the ascent step from "
                           "w + δ has length λρ.", check=options.non_negative)


def gsam_problems(settings: Any) -> list[str]:
  """--gsam_rho_schedule: ρ_min ≤ ρ, and a schedule whose step size changes."""
  rho_min = settings.values["gsam_rho_schedule"]
  if rho_min is None:
    return []
  if rho_min > settings.rho:
    return [f"--gsam_rho_schedule={rho_min:g} (ρ_min) must be at most --rho={settings.rho:g}"]
  o = settings.schedule
  if o is None:
    return ["--gsam_rho_schedule needs the step-size schedule it follows"]
  from sam_edge.optim import schedules  # pylint: disable=import-outside-toplevel  (module doc)
  low, high = schedules.extremes(o.schedule, o.step_size, warmup_steps=o.warmup_steps,
                                 total_steps=o.total_steps, boundaries=o.boundaries,
                                 factor=o.factor)
  if low == high:
    return ["--gsam_rho_schedule needs a step size that changes (--lr_schedule=cosine|step or "
            "--warmup_steps >= 2)"]
  return []


def problems(settings: Any) -> list[str]:
  """What is wrong with a combination of SAM settings (`sam.SamSettings`), one line each."""
  p = []
  variant, k = settings.variant, settings.micro_batches
  if settings.perturbed not in PERTURBED:
    p.append(f"--sam_params must be all or normalization, got {settings.perturbed}")
  if isinstance(k, bool) or not isinstance(k, int) or k < 1:
    p.append(f"--accumulate_batches must be an integer >= 1, got {k}")
    k = 1
  if settings.group_size is not None and not variant.groups:
    p.append(f"--sam_group_size (m-sharpness) applies to the variants without state or random "
             f"draws, not --sam={settings.kind}")
  if k > 1 and settings.group_size is not None:
    p.append("--accumulate_batches does not combine with --sam_group_size: m-sharpness already "
             "takes the batch one group at a time")
  if k > 1 and not variant.accumulates:
    p.append(f"--accumulate_batches is refused with --sam={settings.kind}: it selects examples "
             "by their losses across the whole batch")
  return p + variant.problems(settings)
