"""What a curvature kind is: one entry that owns its flags, its settings and checks, its pure
measurement, its record keys, its part of the measurement line, its TensorBoard scalars and its
figures. `registry.KINDS` lists them; the loop, the command line, TensorBoard and the figures
read the registry and name no kind, so adding a kind is one module in `kinds/` and one line in
the registry.

A kind's `measure(inputs, settings, key, state) -> (record, state)` is pure and jittable:
`inputs` what the measurement hands every kind (`Inputs`: the measured loss, parameters and batch,
λ1's eigenvector, the gradient, the optimizer's step, fresh training batches), `settings` a frozen
(static) dataclass, `record` a small dict of fixed-shape arrays (or None) with the keys
`record_keys`, `state` what its next measurement starts from (`init_state`; `()` for none).
Its randomness comes from `key` alone (the registry folds in the kind's `seed`, so turning one
kind on or off never changes another's numbers). Kinds import jax only inside
`measure` and `init_state`, so that declaring their flags costs nothing at `--help`.
"""

from typing import Any, Callable, Mapping, NamedTuple, Optional, Sequence

from sam_edge.options import Option
from sam_edge.plots.spec import FigureOutput, Panel, Series

Record = dict[str, Any]


class Inputs(NamedTuple):
  """What a measurement hands its kinds (arrays, and functions to trace inside the measurement).

  `objective` is the measured loss L (`curvature.objective.Objective`) at `params` on `batch`;
  `top_vector` is u with S = uᵀ H u the measured top eigenvalue λ1 (v1 for the Hessian; for a
  preconditioned operator P^{-1/2} H P^{-1/2}, u = P^{-1/2} v1); `gradient` is ∇L(w) on the
  batch; `optimizer_step(d)` is the direction s of the step the optimizer would take from its
  current state given the gradient d (w ← w − η s; s = d for plain descent);
  `training_batches(key)` draws a fresh batch of the run's
  batch size from the training set (a stream of its own: training never sees it), the whole
  set when `full_batch`.
  """
  objective: Any
  params: Any
  batch: Any
  top_vector: Any = None
  gradient: Any = None
  optimizer_step: Optional[Callable[[Any], Any]] = None
  training_batches: Optional[Callable[[Any], Any]] = None
  full_batch: bool = False


class Kind:
  """The base of a curvature kind (module doc); the defaults do nothing."""
  name: str = ""
  settings_type: type = object               # the frozen dataclass of its settings
  seed: int = 0
  record_keys: tuple[str, ...] = ()
  options: tuple[Option, ...] = ()
  figures: tuple[FigureOutput, ...] = ()     # PDFs of its own, besides its curvature panels

  def settings(self, values: Mapping[str, Any]) -> Optional[Any]:
    """Its settings from the run's values ({flag: value}), or None when not requested."""
    raise NotImplementedError

  def problems(self, settings: Any) -> list[str]:
    """Why `settings` cannot run, one line each naming the flag (checked before anything is
    compiled; a library call with such settings raises ValueError)."""
    del settings
    return []

  def size_problems(self, settings: Any, num_params: int) -> list[str]:
    """Settings that need more dimensions than the model's `num_params` parameters."""
    del settings, num_params
    return []

  def init_state(self, settings: Any, params: Any) -> Any:
    """The state the first measurement starts from."""
    del settings, params
    return ()

  def measure(self, inputs: Inputs, settings: Any, key: Any, state: Any) -> tuple[Record, Any]:
    raise NotImplementedError

  def line(self, record: Mapping[str, Any]) -> str:
    """Its part of the printed measurement line (" | tr(H) 12.3 ± 0.4"), "" for none."""
    del record
    return ""

  def scalars(self, record: Mapping[str, Any]) -> dict[str, Any]:
    """Its TensorBoard scalars {tag: value} from a host record holding its keys."""
    del record
    return {}

  def panels(self, records: Sequence[Mapping[str, Any]], title: str) -> list[Panel]:
    """Its panels of the curvature figure, from the records holding its keys."""
    del records, title
    return []

  def eigen_series(self, records: Sequence[Mapping[str, Any]]) -> list[Series]:
    """Its curves on the eigenvalue figures, beside λ1 and the method's edge (none by default)."""
    del records
    return []


class WarmLanczosKind(Kind):
  """A kind whose Lanczos starts from its previous measurement's eigenvector (its state, a
  raveled vector; zeros at first: a random start). Its settings hold `max_steps`, `tol` and
  `min_steps`; `cap_flag` is the flag its problems name."""
  cap_flag: str = ""

  def problems(self, settings: Any) -> list[str]:
    if settings.max_steps < 1 or not settings.tol > 0:
      return [f"{self.cap_flag}: {self.name} needs max_steps >= 1 and tol > 0, got "
              f"{settings.max_steps} and {settings.tol}"]
    return []

  def init_state(self, settings: Any, params: Any) -> Any:
    """A zero raveled vector: the first measurement starts at random."""
    import jax.numpy as jnp  # pylint: disable=import-outside-toplevel
    from jax.flatten_util import ravel_pytree  # pylint: disable=import-outside-toplevel
    del settings
    return jnp.zeros_like(ravel_pytree(params)[0])
