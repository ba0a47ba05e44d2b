"""One landscape, from a run's saved parameters to landscape.pdf and landscape.npz.

The run's problem is rebuilt from its config (`studies.trained`): the same network, loss and
training set (label noise included). The loss drawn is the training loss in evaluation mode,

    L(w) = mean over the examples of ℓ(f̄(w, s; x), y),

with f̄ the network's evaluation-mode outputs (`Problem.predict`): a BatchNorm network uses the
run's stored running statistics s at every point of the grid (never the batch's own), so each
example's loss depends on that example only; networks without BatchNorm have no s. The
examples are the run's first `examples` training examples in its stored order (0: all). The
Hessian directions are those of this same L at θ.
"""

import os
import time
from typing import Any, Callable, NamedTuple, Optional, Sequence

import jax
import numpy as np

from sam_edge import errors
from sam_edge.landscapes import directions, figures, grid
from sam_edge.pytree import PyTree
from sam_edge.studies import trained


class Settings(NamedTuple):
  """What to draw (the command's flags, checked)."""
  source: str                     # a run folder or a --params_output file
  out: str                        # the folder for landscape.pdf and landscape.npz
  kind: str                       # "random", "hessian" or "runs"
  runs: Sequence[str]             # with "runs": one (1-D) or two (2-D) other runs
  dims: int                       # 1 or 2
  grid: int                       # points per axis
  range: tuple[float, float]      # the coefficients' interval, on every axis
  seed: int                       # the random directions' and the Lanczos start's PRNG key
  examples: int                   # the first N training examples (0: all)
  chunk: int                      # grid points per vmapped batch (0: by the device)
  lanczos_steps: int              # at most this many HVPs for the Hessian directions
  lanczos_tol: float
  manual_dir: Optional[str]
  tfds_data_dir: Optional[str]


def eval_loss(p: Any) -> Callable[[PyTree, PyTree], jax.Array]:
  """`(params, data) -> L` with data = {"state", "constants", "batch"}: the evaluation-mode
  training loss (`trained.eval_loss`), every array an argument of the compiled function."""
  loss = trained.eval_loss(p)
  return lambda w, d: loss(w, d["state"], d["batch"], d["constants"])


def _same_shapes(a: PyTree, b: PyTree) -> bool:
  la, ta = jax.tree.flatten(a)
  lb, tb = jax.tree.flatten(b)
  return ta == tb and all(np.shape(x) == np.shape(y) for x, y in zip(la, lb))


def other_runs(s: Settings, t: trained.Trained) -> list[PyTree]:
  """The parameters of `s.runs`, each verified and of θ's shapes (InputError, one line)."""
  others = []
  for path in s.runs:
    other = trained.load(path)
    if not _same_shapes(other.params, t.params):
      raise errors.InputError(f"--runs: {path} holds a network of another shape than "
                              f"{s.source}")
    others.append(other.params)
  return others


def plane(s: Settings, t: trained.Trained, others: list[PyTree], loss: Callable, data: PyTree,
          log: Callable[[str], None]) -> directions.Plane:
  """The directions `s.kind` asks for, around the run's parameters (`others`: those of
  `s.runs`)."""
  key = jax.random.PRNGKey(s.seed)
  if s.kind == "random":
    return directions.random_plane(key, t.params, s.dims)
  if s.kind == "hessian":
    log(f"top {s.dims} Hessian eigenvectors by Lanczos (at most {s.lanczos_steps} HVPs)")
    return directions.hessian_plane(loss, t.params, data, key, s.dims,
                                    max_steps=s.lanczos_steps, tol=s.lanczos_tol)
  try:
    return directions.runs_plane(t.params, others, list(s.runs))
  except ValueError as e:
    raise errors.InputError(f"--runs: {e}") from None


def draw(s: Settings, log: Callable[[str], None] = print) -> dict:
  """Reads the run, computes the grid and writes landscape.pdf and landscape.npz into `s.out`;
  returns {"centre": L(θ) when θ is a grid point (else NaN), "min", "max", "direction_seconds",
  "grid_seconds" (each with its compilation)}."""
  t = trained.load(s.source)
  trained.check_image(t, "landscapes support")
  others = other_runs(s, t)                            # read and checked before any data
  p = trained.problem(t, manual_dir=s.manual_dir, tfds_data_dir=s.tfds_data_dir)
  n = len(next(iter(p.train_arrays.values())))
  if s.examples > n:
    raise errors.InputError(f"--examples={s.examples}: the run has {n} training examples")
  count = s.examples or n
  loss = eval_loss(p)
  data = {"state": p.model_state, "constants": p.constants,
          "batch": trained.batch(p, range(count))}
  start = time.perf_counter()
  where = plane(s, t, others, loss, data, log)
  middle = time.perf_counter()
  axes = [grid.axis(s.range[0], s.range[1], s.grid) for _ in range(s.dims)]
  chunk = s.chunk or grid.default_chunk()
  log(f"{s.grid ** s.dims} points on {count} training examples, {chunk} at a time "
      f"({where.description})")
  values = grid.evaluate(loss, p.params, data, where.vectors, axes, chunk)
  end = time.perf_counter()
  title = (f"{t.config.get('nn_architecture', t.task)} on {t.config.get('dataset', '')}, "
           f"step {t.step}: training loss on {count} examples")
  os.makedirs(s.out, exist_ok=True)
  figures.write_npz(f"{s.out}/{figures.NPZ}", values, axes, where, s.kind, count, t.path)
  figures.write_pdf(f"{s.out}/{figures.PDF}", values, axes, where, s.kind, title)
  origin = tuple(int(np.flatnonzero(a == 0.0)[0]) if np.any(a == 0.0) else None
                 for a in reversed(axes))
  centre = float(values[origin]) if None not in origin else float("nan")
  return {"centre": centre, "min": float(np.nanmin(values)), "max": float(np.nanmax(values)),
          "direction_seconds": middle - start, "grid_seconds": end - middle}
