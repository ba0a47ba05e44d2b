"""The closing sentences of a run, in plain words: where λ1 ended against its method's edge, and
the figure that shows it.

Over the last third of the measurements (by count), r = λ1/edge (the record's `edge`, the
stability threshold of the configured method); with its median m the run ended

    at its edge     |m − 1| ≤ 10%,      below it     m < 0.9,      above it     m > 1.1.

No sentence about the edge when no measurement has one (a method without a closed form).
"""

import statistics
from typing import Any, Mapping, Optional, Sequence

AT_THE_EDGE = 0.1


def edge_sentence(records: Sequence[Mapping[str, Any]]) -> Optional[str]:
  """Where λ1 ended against its edge (module doc), or None."""
  points = [(r["step"], r["eigenvalues"][0] / r["edge"], r.get("edge_label"))
            for r in records if r.get("edge") and r.get("eigenvalues")]
  if not points:
    return None
  last = points[len(points) - max(1, len(points) // 3):]
  ratios = [ratio for _, ratio, _ in last]
  median = statistics.median(ratios)
  where = ("at its edge" if abs(median - 1) <= AT_THE_EDGE
           else "below its edge" if median < 1 else "above its edge")
  label = last[-1][2] or "the edge"
  return (f"λ1 ended {where}: over the last {len(last)} of {len(points)} measurements (steps "
          f"{last[0][0]}-{last[-1][0]}) λ1/edge has median {median:.3f} (from {min(ratios):.3f} "
          f"to {max(ratios):.3f}), the edge being {label}.")


def figure_sentence(outputs: Mapping[str, str]) -> Optional[str]:
  """Which PDF draws λ1 against its edge, if one was written."""
  for flag in ("eigs_se_only_output", "eigs_curve_output"):
    if outputs.get(flag):
      return f"{outputs[flag]} draws λ1 against its edge at every measurement."
  return None
