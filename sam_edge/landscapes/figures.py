"""What `python -m sam_edge.landscape` writes: landscape.pdf (a 1-D curve or a 2-D contour, drawn
by the project's figure engine) and landscape.npz (the grid).

landscape.npz holds
  x, [y]            the axis values (coefficients of d₁ [and d₂]);
  loss              the training loss on the grid: [len(x)] in 1-D, [len(y), len(x)] in 2-D
                    (loss[j, i] at θ + x_i d₁ + y_j d₂);
  directions        the kind ("random", "hessian", "runs") and `description`, a line on them;
  point_names, point_coords   the marked points (θ at the origin, other runs);
  value_<name>      the directions' numbers (λ₁, λ₂ and their residuals, ‖d₁‖, ...);
  examples, source  the training examples the loss is taken over, and the run or params file.
"""

import io
from typing import Sequence

import numpy as np

from sam_edge import records
from sam_edge.landscapes.directions import Plane
from sam_edge.plots import figure
from sam_edge.plots.spec import Contour, Panel, Series, VLine

NPZ = "landscape.npz"
PDF = "landscape.pdf"


def panel(values: np.ndarray, axes: Sequence[np.ndarray], plane: Plane, kind: str,
          title: str) -> Panel | Contour:
  """The 1-D training loss curve along d₁ (marked points as vertical lines), or the 2-D contour
  over (d₁, d₂) with log-spaced levels and the marked points as stars."""
  if len(axes) == 1:
    marks = [VLine(name, xy[0], {"color": f"C{i + 1}", "linestyle": "--", "linewidth": 1})
             for i, (name, xy) in enumerate(plane.points.items())]
    return Panel(title, f"coefficient of d1 ({kind})", "training loss",
                 [Series("training loss", list(axes[0]), list(values), {"color": "C0"})],
                 vlines=marks)
  points = [Series(name, [xy[0]], [xy[1]], {"color": "white" if i == 0 else f"C{i + 1}",
                                            "markeredgecolor": "black"})
            for i, (name, xy) in enumerate(plane.points.items())]
  return Contour(title, f"coefficient of d1 ({kind})", f"coefficient of d2 ({kind})",
                 list(axes[0]), list(axes[1]), values, colorbar="training loss", log=True,
                 points=points)


def write_pdf(path: str, values: np.ndarray, axes: Sequence[np.ndarray], plane: Plane, kind: str,
              title: str) -> None:
  """landscape.pdf: `panel` drawn by `plots.figure`, with the directions' line as its title."""
  figure.write(path, [panel(values, axes, plane, kind, plane.description)], title=title)


def write_npz(path: str, values: np.ndarray, axes: Sequence[np.ndarray], plane: Plane, kind: str,
              examples: int, source: str) -> None:
  """landscape.npz (module doc), written atomically."""
  arrays = {"x": np.asarray(axes[0]), "loss": np.asarray(values),
            "directions": np.asarray(kind), "description": np.asarray(plane.description),
            "point_names": np.asarray(list(plane.points)),
            "point_coords": np.asarray(list(plane.points.values()), np.float64),
            "examples": np.asarray(examples), "source": np.asarray(source)}
  if len(axes) > 1:
    arrays["y"] = np.asarray(axes[1])
  arrays.update({f"value_{k}": np.asarray(v) for k, v in plane.values.items()})
  buf = io.BytesIO()
  np.savez(buf, **arrays)
  records.atomic_write_bytes(path, buf.getvalue())
