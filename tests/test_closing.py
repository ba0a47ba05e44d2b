"""The closing sentences of a run: where λ1 ended against its edge."""

from sam_edge.run import closing


def records(ratios, edge=2.0, label="SAM-edge"):
  return [{"step": 10 * i, "eigenvalues": [r * (edge or 1.0)], "edge": edge, "edge_label": label}
          for i, r in enumerate(ratios)]


def test_at_below_and_above_the_edge_over_the_last_third():
  at = closing.edge_sentence(records([0.5, 0.7, 0.9, 1.0, 1.05, 0.97, 1.02, 1.04, 0.99]))
  assert at.startswith("λ1 ended at its edge") and "last 3 of 9" in at and "steps 60-80" in at
  assert "median 1.020" in at and "SAM-edge" in at
  assert closing.edge_sentence(records([1.0, 0.5, 0.6, 0.7])).startswith("λ1 ended below")
  assert closing.edge_sentence(records([1.0, 1.3, 1.2])).startswith("λ1 ended above")


def test_no_edge_no_sentence_and_the_figure():
  assert closing.edge_sentence(records([1.0], edge=None)) is None
  assert closing.edge_sentence([]) is None
  assert "/tmp/se.pdf draws λ1" in closing.figure_sentence(
      {"eigs_se_only_output": "/tmp/se.pdf", "eigs_curve_output": "/tmp/e.pdf"})
  assert closing.figure_sentence({}) is None
