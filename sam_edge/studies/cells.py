"""Summary rows -> the rows of cells.csv: one per cell (the runs that differ only in their seed),
in the order of their axis values, holding its non-seed axes, `n` (its runs) and, for each metric
column m of summary.csv, m_mean, m_std, m_n, m_ci95: `intervals.stats` of the cell's finite
values of m (ci95 = t_{0.975, n−1} · std/√n; std and ci95 empty for n < 2). The metrics between
runs (`summary.BETWEEN`) are one value per cell, not a sample per seed: their std and ci95 are
empty.
"""

from typing import Any

from sam_edge.studies import intervals, summary

STATS = ("mean", "std", "n", "ci95")
N = "n"


def metrics(rows: list[dict[str, Any]], axes: list[str]) -> list[str]:
  """The metric columns of summary.csv for these rows, in its order."""
  return [c for c in summary.columns(axes, rows) if c in summary.METRICS]


def stat_column(metric: str, stat: str) -> str:
  """The column of `stat` (mean, std, n, ci95) of `metric`: `<metric>_<stat>`."""
  return f"{metric}_{stat}"


def stat_columns(names: list[str]) -> list[str]:
  """The columns of mean, std, n and ci95 of each metric of `names`."""
  return [stat_column(m, s) for m in names for s in STATS]


def table(rows: list[dict[str, Any]], axes: list[str]) -> list[dict[str, Any]]:
  """The rows of cells.csv of the summary `rows` (module doc)."""
  keys, names = summary.non_seed(axes), metrics(rows, axes)
  ranks = [{v: i for i, v in enumerate(summary.sort_values({r.get(k) for r in rows}))}
           for k in keys]
  setting = lambda r: tuple(r.get(k) for k in keys)
  order = lambda r: tuple(rank.get(v, len(rank)) for rank, v in zip(ranks, setting(r)))  # None last
  out = []
  for members in summary.groups(sorted(rows, key=order), setting).values():
    row: dict[str, Any] = {a: members[0].get(a) for a in keys}
    row[N] = len(members)
    for metric in names:
      s = intervals.stats(summary.metric_values(members, metric))
      if metric in summary.BETWEEN:
        s = s._replace(std=None, ci95=None)
      row.update({stat_column(metric, name): value for name, value in s._asdict().items()})
    out.append(row)
  return out


def write_csv(path: str, rows: list[dict[str, Any]], axes: list[str]) -> list[dict[str, Any]]:
  """Writes cells.csv of the summary `rows` atomically; returns its rows."""
  cells = table(rows, axes)
  summary.write_table(path, [*summary.non_seed(axes), N, *stat_columns(metrics(rows, axes))],
                      cells)
  return cells
