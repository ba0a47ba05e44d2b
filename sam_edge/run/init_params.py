"""`--init_params=PATH`: a run that starts from an earlier run's parameters (finetuning).

PATH is a parameters file written by `--params_output` (`run.params_file`), or a run folder
holding one (`run_folder.params_path`). Every array of the new network, its parameters and the
BatchNorm running statistics of its model state, whose path (e.g. `Dense_0/kernel`) and shape the
file holds too is loaded: cast to the array's dtype, so an array of the same dtype keeps its
bits. Every other array keeps its fresh initialisation from --seed, e.g. a new head for a
dataset with another number of classes. One line says which:

    --init_params=runs/cifar10/params.npz: loaded 2 of 4 parameter arrays (written by
    image_classification at step 400); freshly initialised: Dense_1/bias [100],
    Dense_1/kernel [8,100]

(on one line). The merged parameters are the run's initial parameters w0: the linearized model
(--regime=linearized) expands around them. Only parameters and statistics come from the file:
the optimizer state (momentum, Adam's moments, the SAM variant's state) starts fresh from them,
the step counter at 0, and with it the step-size schedule and its warm-up. A run that resumes from
a checkpoint (--resume) continues from the checkpoint's state instead; its w0 is still the merged
parameters. A file that shares no array with the network (another architecture) is refused as an
InputError, once the network is built, before anything is compiled.

The raw pickle's `final` records `init_params_file` (the file read), `init_params_loaded` (the
number of arrays loaded, statistics included) and `init_params_fresh` (the names of the arrays
left freshly initialised).
"""

import dataclasses
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from sam_edge import errors
from sam_edge.models import linearize
from sam_edge.pytree import PyTree
from sam_edge.run import checksums, params_file, run_folder
from sam_edge.run.problem import Problem

SHOWN = 8                  # the file's arrays named when none of them fits the network


class Merged(NamedTuple):
  """A tree with some of its arrays loaded from a file."""
  tree: PyTree
  loaded: list[str]                        # the names of the arrays loaded
  fresh: list[tuple[str, tuple[int, ...]]]  # (name, shape) of each array kept as it was

  def count(self, what: str) -> str:
    """E.g. "2 of 4 parameter arrays"."""
    return f"{len(self.loaded)} of {len(self.loaded) + len(self.fresh)} {what}"


def _keys(path: tuple) -> tuple[str, ...]:
  """A jax key path as the tuple of its keys' texts."""
  return tuple(checksums.key_text(k) for k in path)


def name(path: tuple[str, ...]) -> str:
  """An array's name: its keys joined by '/', without flax's leading 'params' collection."""
  return "/".join(path[1:] if len(path) > 1 and path[0] == "params" else path)


def merge(fresh: PyTree, saved: PyTree) -> Merged:
  """`fresh` with each array whose path and shape `saved` holds replaced by saved's, cast to the
  fresh array's dtype (module doc); the others as they are."""
  held = {_keys(path): y for path, y in jax.tree_util.tree_flatten_with_path(saved)[0]}
  loaded, kept = [], []

  def take(path: tuple, x: Any) -> Any:
    y = held.get(_keys(path))
    if y is not None and np.shape(y) == np.shape(x):
      loaded.append(name(_keys(path)))
      return jnp.asarray(np.asarray(y, dtype=x.dtype))
    kept.append((name(_keys(path)), tuple(np.shape(x))))
    return x
  return Merged(jax.tree_util.tree_map_with_path(take, fresh), loaded, kept)


def initialise(problem: Problem, path: str) -> tuple[Problem, str]:
  """`problem` starting from the parameters file at `path` (or in the run folder `path`): its
  parameters, model state, expansion point and description (module doc); and the line to print.
  InputError (one line) for a missing or unsound file, or one that shares no parameter array
  with the network."""
  try:
    found = run_folder.params_path(path)
    saved = params_file.read(found)
  except errors.InputError as e:
    raise errors.InputError(f"--init_params: {e}") from None
  params = merge(problem.params, saved.params)
  if not params.loaded:
    names = [name(_keys(p)) for p, _ in jax.tree_util.tree_flatten_with_path(saved.params)[0]]
    raise errors.InputError(
        f"--init_params={path}: none of the {len(names)} parameter arrays of {found} ("
        f"{', '.join(names[:SHOWN])}{', ...' if len(names) > SHOWN else ''}) has the path and "
        "shape of one of this network's: the file holds another architecture")
  stats = merge(problem.model_state, saved.model_state or {})
  description = {**problem.description, "init_params_file": found,
                 "init_params_loaded": len(params.loaded) + len(stats.loaded),
                 "init_params_fresh": [n for n, _ in params.fresh + stats.fresh]}
  started = dataclasses.replace(problem, params=params.tree, model_state=stats.tree,
                                constants=linearize.expanded_at(problem.constants, params.tree),
                                description=description)
  count = params.count("parameter arrays")
  if stats.loaded or stats.fresh:
    count += f" and {stats.count('BatchNorm statistics')}"
  source = f"{found}, " if found != path else ""
  fresh = [f"{n} [{','.join(str(d) for d in shape)}]" for n, shape in params.fresh + stats.fresh]
  return started, (f"--init_params={path}: loaded {count} ({source}written by {saved.task} at "
                   f"step {saved.step}); " + (f"freshly initialised: {', '.join(fresh)}" if fresh
                                              else "none freshly initialised"))
