"""A run's own figures, from its raw data: the Hessian eigenvalues against the method's edge
(with and without 2/η), the gradient alignments, the training loss, and the test metrics.

Each is a `spec.FigureOutput`, keyed by its output flag. `figure_outputs` lists every PDF of a
run: these, the curvature figure and the curvature kinds' own, from the kinds the caller hands
over (plots never imports curvature). The run's writer draws them all the same way.
"""

from typing import Any, Mapping, Sequence

from sam_edge.plots.spec import (
  NO_MEASUREMENTS,
  XLABEL,
  FigureOutput,
  HLine,
  Panel,
  Series,
  VLine,
  colour,
  finite,
  positive_values,
  records_of,
)

EIGS_YLABEL = "Hessian eigenvalue"
PRECONDITIONED_YLABEL = "eigenvalue of P^-1/2 H P^-1/2 (Adam-preconditioned Hessian)"
ALIGNMENT_YLABEL = "|cosine| with top Hessian eigenvector v1"
LOSS_YLABEL = "training loss"
SAM_EDGE_LABEL = "SAM edge"
TWO_OVER_ETA_LABEL = "2/η"
G_ALIGNMENT_LABEL = "|cos(∇L, v1)|"
SG_ALIGNMENT_LABEL = "|cos(∇L_SAM, v1)|"
UNCONVERGED_LABEL = "not converged (residual > tol·|λ1|)"
REFERENCE_EDGES = ("2/η", "SAM-edge")    # edge labels drawn as the reference's SAM edge


def record_series(recs: Sequence[Mapping[str, Any]], key: str, label: str,
                  style: Mapping[str, Any]) -> Series:
  """A series of one record field against the step."""
  return Series(label, [r.get("step") for r in recs], [r.get(key) for r in recs], style)


def eigenvalue_label(i: int, kind: str | None = None) -> str:
  """The legend label of the i-th (0-based) Hessian eigenvalue; "|λ1|" for magnitudes."""
  magnitude = kind == "magnitude"
  name = f"|λ{i + 1}|" if magnitude else f"λ{i + 1}"
  return f"{name} (top Hessian eigenvalue{' magnitude' if magnitude else ''})" if i == 0 else name


def _eigenvalue_points(recs: Sequence[Mapping[str, Any]], i: int) -> tuple[list, list]:
  """(steps, values) of the i-th eigenvalue, over the records that hold one."""
  held = [r for r in recs if i < len(r.get("eigenvalues") or ())]
  return [r.get("step") for r in held], [r["eigenvalues"][i] for r in held]


def eigenvalue_series(recs: Sequence[Mapping[str, Any]]) -> list[Series]:
  """One series per tracked eigenvalue of the (non-empty) `recs`, λ1 first; k is the longest
  `eigenvalues` list (a record with fewer contributes to the ones it has), and at least one
  series is returned, so that a figure without eigenvalues is still labelled."""
  k = max(max(len(r.get("eigenvalues") or ()) for r in recs), 1)
  kind = recs[-1].get("eigenvalue_kind")
  return [Series(eigenvalue_label(i, kind), *_eigenvalue_points(recs, i),
                 {"color": colour(i, k), "linewidth": 1.6 if i == 0 else 1.0}) for i in range(k)]


def unconverged_series(recs: Sequence[Mapping[str, Any]]) -> list[Series]:
  """Hollow markers, in each eigenvalue's colour, over the eigenvalues of measurements whose
  `converged` is False (one legend entry in all); empty when every measurement converged."""
  bad = [r for r in recs if r.get("converged") is False]
  if not bad:
    return []
  k = max(len(r.get("eigenvalues") or ()) for r in recs)
  style = {"marker": "o", "markersize": 7, "markerfacecolor": "none", "linestyle": "none",
           "markeredgewidth": 1.2}
  return [Series(UNCONVERGED_LABEL if i == 0 else "_nolegend_", *_eigenvalue_points(bad, i),
                 {"color": colour(i, k), **style}) for i in range(k)]


def two_over_eta_marks(recs: Sequence[Mapping[str, Any]]) -> tuple[list[Series], list[HLine]]:
  """2/η as a horizontal line, or as a curve if it changed during the run (both empty when no
  record has a finite 2/η)."""
  style = {"color": "tab:red", "linestyle": "--", "linewidth": 1.2}
  pairs = [(r.get("step", 0), r.get("two_over_eta")) for r in recs
           if finite(r.get("two_over_eta")) and finite(r.get("step", 0))]
  values = sorted({float(v) for _, v in pairs})
  if not values:
    return [], []
  if len(values) == 1:
    return [], [HLine(TWO_OVER_ETA_LABEL, values[0], style)]
  return [Series(TWO_OVER_ETA_LABEL, [p[0] for p in pairs], [p[1] for p in pairs], style)], []


def edge_series(recs: Sequence[Mapping[str, Any]]) -> list[Series]:
  """The method's stability edge against the step, labelled by its formula.

  Plain GD and normalized SAM (and pickles from before `edge_label` existed) draw the SAM edge
  as the reference does; another method draws its own `edge` under its `edge_label`, e.g.
  "(2+2β)/η, β=0.9"; a method without a known closed form (`edge` None) draws none.
  """
  style = {"color": "black", "linestyle": "-.", "linewidth": 1.4}
  label = next((r["edge_label"] for r in reversed(recs) if "edge_label" in r), REFERENCE_EDGES[0])
  if label in REFERENCE_EDGES:
    return [record_series(recs, "sam_edge", SAM_EDGE_LABEL, style)]
  return [] if label is None else [record_series(recs, "edge", label, style)]


def kind_records(raw: Mapping[str, Any], kinds: Sequence[Any]
                 ) -> list[tuple[Any, list[Mapping[str, Any]]]]:
  """Each curvature kind of `kinds` with its records: those holding all its `record_keys`."""
  recs = records_of(raw)
  return [(k, [r for r in recs if all(key in r for key in k.record_keys)]) for k in kinds]


def eigs_panel(raw: Mapping[str, Any], title: str, *, with_two_over_eta: bool = True,
               kinds: Sequence[Any] = ()) -> Panel:
  """λ1..λk, the method's edge (`edge_series`), optionally 2/η (it can be far above the rest and
  squash the plot, hence the variant without it) and the curves the curvature `kinds` draw
  beside λ1 (their `eigen_series` of their records)."""
  recs = records_of(raw)
  if not recs:
    return Panel(title, XLABEL, EIGS_YLABEL, [], note=NO_MEASUREMENTS)
  extra, hlines = two_over_eta_marks(recs) if with_two_over_eta else ([], [])
  series = (eigenvalue_series(recs) + edge_series(recs) + extra + unconverged_series(recs)
            + [s for k, held in kind_records(raw, kinds) for s in k.eigen_series(held)])
  preconditioned = recs[-1].get("operator") == "preconditioned_hessian"
  return Panel(title, XLABEL, PRECONDITIONED_YLABEL if preconditioned else EIGS_YLABEL, series,
               hlines)


def alignment_panel(raw: Mapping[str, Any], title: str) -> Panel:
  """|cos| of ∇L and ∇L_SAM with v1, y in [0, 1]."""
  recs = records_of(raw)
  series = [record_series(recs, "g_alignment", G_ALIGNMENT_LABEL, {"color": "tab:blue"}),
            record_series(recs, "sg_alignment", SG_ALIGNMENT_LABEL, {"color": "tab:orange"})]
  return Panel(title, XLABEL, ALIGNMENT_YLABEL, series if recs else [], ylim=(0.0, 1.0),
               note=None if recs else NO_MEASUREMENTS)


def loss_points(raw: Mapping[str, Any]) -> tuple[list[Any], list[Any]]:
  """The training-loss curve (steps, losses): raw["losses"] if it has points, else the loss of
  each record; possibly holding non-finite values."""
  losses = raw.get("losses") or {}
  steps, values = list(losses.get("step") or []), list(losses.get("loss") or [])
  if steps and values:
    return steps, values
  recs = records_of(raw)
  return [r.get("step") for r in recs], [r.get("loss") for r in recs]


def loss_panel(raw: Mapping[str, Any], title: str) -> Panel:
  """The training loss at every step (log y when every finite loss is positive), with the step
  where a run diverged."""
  steps, values = loss_points(raw)
  if not steps:
    return Panel(title, XLABEL, LOSS_YLABEL, [], note="no training steps")
  series = [Series(LOSS_YLABEL, steps, values, {"color": "tab:blue", "linewidth": 0.8})]
  diverged_at = (raw.get("final") or {}).get("diverged_at_step")
  vlines = [] if diverged_at is None else [VLine(
      f"diverged at step {diverged_at}", diverged_at,
      {"color": "tab:red", "linestyle": ":", "linewidth": 1.5})]
  return Panel(title, XLABEL, LOSS_YLABEL, series, log_y=positive_values(series),
               legend_loc="upper right", vlines=vlines)


EVAL_SERIES = (("validation", "tab:green"), ("test", "tab:orange"))
EVAL_WEIGHTS = (("", "", {}), ("ema_", " of the moving average", {"linestyle": "--"}))


def evaluation_panels(raw: Mapping[str, Any], title: str) -> list[Panel]:
  """The training loss beside the validation and test losses of every evaluation, and the
  validation and test errors (with --ema_decay each beside that of the weights' moving average,
  dashed); none without evaluations."""
  evaluations = list(raw.get("evaluations") or [])
  if not evaluations:
    return []
  eval_steps = [e["step"] for e in evaluations]

  def curves(what: str, width: float) -> list[Series]:
    return [Series(f"{split} {what}{label}", eval_steps,
                   [e.get(f"{prefix}{split}_{what}") for e in evaluations],
                   {"color": color, "linewidth": width, **style})
            for prefix, label, style in EVAL_WEIGHTS for split, color in EVAL_SERIES
            if any(f"{prefix}{split}_{what}" in e for e in evaluations)]
  series = [Series("training loss (the batch of each step)", *loss_points(raw),
                   {"color": "tab:blue", "linewidth": 0.8}), *curves("loss", 1.6)]
  out = [Panel(f"{title}: loss", XLABEL, "loss", series, log_y=positive_values(series),
               legend_loc="upper right")]
  errors = curves("error", 1.5)
  if errors:
    splits = [split for split, _ in EVAL_SERIES if any(s.label.startswith(split) for s in errors)]
    out.append(Panel(f"{title}: {' and '.join(splits)} error", XLABEL, "error", errors,
                     legend_loc="upper right"))
  return out


def tracking_panels(raw: Mapping[str, Any], title: str) -> list[Panel]:
  """λ1 at every step (`--track_every_step`) under the training loss, on one step axis, with
  the method's edge and 2/η of the measurements and, with SAM, the curvature along the ascent
  step; none without tracking. Every step is drawn, so a period-2 oscillation shows."""
  losses = raw.get("losses") or {}
  if not losses.get("lambda1_per_step"):
    return []
  steps = losses["step"]
  thin = {"linewidth": 0.7}
  loss = [Series(LOSS_YLABEL, steps, losses["loss"], {"color": "tab:blue", **thin})]
  series = [Series("λ1 at every step", steps, losses["lambda1_per_step"],
                   {"color": "C0", **thin})]
  if losses.get("gradient_curvature"):
    series.append(Series("curvature along SAM's ascent step", steps,
                         losses["gradient_curvature"], {"color": "tab:orange", **thin}))
  recs = records_of(raw)
  series += edge_series(recs)
  extra, hlines = two_over_eta_marks(recs)
  return [Panel(f"{title}: loss", XLABEL, LOSS_YLABEL, loss, log_y=positive_values(loss)),
          Panel(f"{title}: λ1 at every step", XLABEL, EIGS_YLABEL, series + extra, hlines)]


def figure_outputs(kinds: Sequence[Any] = ()) -> tuple[FigureOutput, ...]:
  """Every PDF a run can write: its own (the eigenvalue ones with the kinds' curves beside λ1),
  the curvature figure of the kinds' panels and the kinds' own figures. `kinds`, the curvature
  kinds the caller hands over (`curvature.registry.KINDS`), are read as data: their
  `record_keys`, `panels(records, title)` and `eigen_series(records)` of the records holding
  those keys (no panels without such records), and `figures`."""
  def curvature(raw: Mapping[str, Any], title: str) -> list[Panel]:
    return [p for k, recs in kind_records(raw, kinds) if recs for p in k.panels(recs, title)]

  return (
    FigureOutput("eigs_curve_output", "/tmp/eigs.pdf",
                 "PDF: top Hessian eigenvalue(s), the method's edge and 2/η",
                 lambda raw, title: [eigs_panel(raw, title, kinds=kinds)]),
    FigureOutput("eigs_se_only_output", "/tmp/eigs_se_only.pdf", "PDF: the same without 2/η",
                 lambda raw, title: [eigs_panel(raw, title, with_two_over_eta=False, kinds=kinds)]),
    FigureOutput("alignment_curve_output", "/tmp/a.pdf",
                 "PDF: |cos| of gradient and SAM gradient with v1",
                 lambda raw, title: [alignment_panel(raw, title)]),
    FigureOutput("loss_curve_output", "/tmp/ell.pdf", "PDF: training loss",
                 lambda raw, title: [loss_panel(raw, title)]),
    FigureOutput("eval_curve_output", "/tmp/eval.pdf",
                 "PDF: the training loss beside the test loss and test error of every "
                 "evaluation; written with --eval_every_steps", evaluation_panels),
    FigureOutput("tracking_curve_output", "/tmp/tracking.pdf",
                 "PDF: λ1 at every step under the training loss; written with "
                 "--track_every_step", tracking_panels),
    FigureOutput("curvature_output", "/tmp/curvature.pdf",
                 "PDF: tr(H) ± its standard error, λ_min, the per-layer top eigenvalues and the "
                 "other curvature kinds' panels; written when one of them is measured", curvature),
    *(f for k in kinds for f in k.figures),
  )
