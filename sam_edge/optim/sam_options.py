"""The problems of a combination of SAM settings, one line each naming the flags (each variant's
own flags and problems sit in its module, `variants/`). Imports neither jax nor absl.
"""

from typing import Any

PERTURBED = ("all", "normalization")                                    # --sam_params


def problems(settings: Any) -> list[str]:
  """What is wrong with a combination of SAM settings (`sam.SamSettings`), one line each."""
  p = []
  variant, k = settings.variant, settings.micro_batches
  if settings.perturbed not in PERTURBED:
    p.append(f"--sam_params must be all or normalization, got {settings.perturbed}")
  if isinstance(k, bool) or not isinstance(k, int) or k < 1:
    p.append(f"--accumulate_batches must be at least 1, got {k}")
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
