"""What a curvature kind is: one entry that owns its flags, its settings and checks, its pure
measurement, its record keys, its part of the measurement line, its TensorBoard scalars and its
figures. `registry.KINDS` lists them; the loop, the command line, TensorBoard and the figures
read the registry and name no kind, so adding a kind is one module in `kinds/` and one line in
the registry.

A kind's `measure(objective, settings, params, batch, key, state) -> (record, state)` is pure and
jittable: `settings` a frozen (static) dataclass, `record` a small dict of fixed-shape arrays
with the keys `record_keys`, `state` what its next measurement starts from (`init_state`; `()`
for none). Its randomness comes from `key` alone (the registry folds in the kind's `seed`, so
turning one kind on or off never changes another's numbers). Kinds import jax only inside
`measure` and `init_state`, so that declaring their flags costs nothing at `--help`.
"""

from typing import Any, Mapping, Optional, Sequence

from sam_edge.options import Option
from sam_edge.plots.spec import FigureOutput, Panel

Record = dict[str, Any]


class Kind:
  """The base of a curvature kind (module doc); the defaults do nothing."""
  name: str = ""
  settings_type: type = object               # the frozen dataclass of its settings
  seed: int = 0
  record_keys: tuple[str, ...] = ()
  options: tuple[Option, ...] = ()
  figures: tuple[FigureOutput, ...] = ()     # PDFs of its own, besides its curvature panels

  def settings(self, flags: Any) -> Optional[Any]:
    """Its settings from the parsed flags (attribute access), or None when not requested."""
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

  def measure(self, objective: Any, settings: Any, params: Any, batch: Any, key: Any,
              state: Any) -> tuple[Record, Any]:
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
