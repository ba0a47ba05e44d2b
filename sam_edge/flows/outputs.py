"""What the command writes into --out: central_flow.pkl and central_flow.pdf.

central_flow.pkl is a plain-typed pickle in the shape of a run's raw data, so that
`python -m sam_edge.verify` checks it: {"config": the flags, "records": [], "losses": the curves
(`trajectory`), "final": the figures (`summary.metrics`), seconds_per_step and
`records_sha256`, the checksum of records and curves (`records.records_sha256`)}.
"""

import os

from sam_edge import records
from sam_edge.flows import figures
from sam_edge.plots import figure

PICKLE, PDF = "central_flow.pkl", "central_flow.pdf"


def write(out: str, config: dict, curves: dict, final: dict, title: str) -> list[str]:
  """Writes both files into `out` (created if needed); returns their paths."""
  os.makedirs(out, exist_ok=True)
  plain = records.to_plain(curves)
  raw = {"config": dict(config), "records": [], "losses": plain,
         "final": {**final, records.RECORDS_SHA256: records.records_sha256([], plain)}}
  pickle_path, pdf_path = os.path.join(out, PICKLE), os.path.join(out, PDF)
  records.write_raw(pickle_path, raw)
  figure.write(pdf_path, figures.panels(curves, final),
               columns=3, title=title)
  return [pickle_path, pdf_path]
