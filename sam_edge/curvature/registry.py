"""The curvature measurement kinds in one place: settings, record keys, one pure function each.

A kind is `measure(loss_fn, settings, params, batch, key, state) -> (record, state)`: pure and
jittable, `settings` a frozen (static) dataclass, `record` a small dict of fixed-shape arrays,
`state` what the next measurement of the kind starts from (λ_min's warm-start vector; () for the
rest), made by `init_state(settings, params)`. `make_curvature_measure` jits all requested kinds
together once per run; each kind draws its randomness from `fold_in(key, kind.seed)`, so turning
one kind on or off never changes another's numbers. Records (keys as in `Kind.record_keys`):

  trace:          trace, trace_stderr, trace_hvps
  density:        density = {nodes [P, m], weights [P, m]}, density_hvps
  per_layer:      per_layer = {block name: {eigenvalue, residual[, trace, trace_stderr]}},
                  per_layer_hvps   (block order: `blocks.block_partition(params).names`)
  min_eigenvalue: min_eigenvalue, min_eigenvalue_residual, min_eigenvalue_hvps

Everything runs at matmul precision "highest", as the top-eigenvalue measurement does.
"""

import dataclasses
from typing import Any, Callable, Mapping, NamedTuple

import jax
import jax.numpy as jnp
from jax.flatten_util import ravel_pytree

from sam_edge.curvature import blocks, extremes, operators, slq, trace

PyTree = Any
LossFn = operators.LossFn
Record = dict[str, Any]
PRECISION = "highest"


@dataclasses.dataclass(frozen=True)
class TraceSettings:
  """Hutch++ or Hutchinson with `probes` HVPs in all (`--trace_probes`)."""
  probes: int = 60
  method: str = trace.DEFAULT_METHOD
  batch_size: int = 1                # HVPs vectorised together (memory × batch_size)


@dataclasses.dataclass(frozen=True)
class DensitySettings:
  """SLQ with `probes` probes of `steps` Lanczos steps (`--density_probes`, `--density_steps`)."""
  probes: int = 2
  steps: int = 90
  probe: str = "rademacher"


@dataclasses.dataclass(frozen=True)
class PerLayerSettings:
  """Lanczos per block (as the top-eigenvalue solver) and, if trace_probes > 0, block traces."""
  max_steps: int = 20
  tol: float = 1e-4
  min_steps: int = 3
  granularity: str = "module"        # module | leaf
  trace_probes: int = 0              # 0: no block traces
  batch_size: int = 1


@dataclasses.dataclass(frozen=True)
class MinEigenvalueSettings:
  """Lanczos on −H, warm-started from the previous measurement's eigenvector."""
  max_steps: int = 80
  tol: float = 1e-4
  min_steps: int = 3


def _operator(loss_fn: LossFn, params: PyTree, batch: PyTree
              ) -> tuple[operators.MatVec, int, Any]:
  """(v ↦ Hv, n, dtype) on the raveled parameters."""
  matvec, flat, _ = operators.hessian_matvec(loss_fn, params, batch)
  return matvec, flat.shape[0], flat.dtype


def no_state(settings: Any, params: PyTree) -> tuple:
  """The state of a kind that keeps none."""
  del settings, params
  return ()


def measure_trace(loss_fn: LossFn, settings: TraceSettings, params: PyTree, batch: PyTree,
                  key: jax.Array, state: tuple) -> tuple[Record, tuple]:
  """tr(H) ± SE (`trace.estimate_trace`)."""
  matvec, n, dtype = _operator(loss_fn, params, batch)
  return trace.estimate_trace(matvec, n, dtype, key, num_probes=settings.probes,
                              method=settings.method, batch_size=settings.batch_size), state


def measure_density(loss_fn: LossFn, settings: DensitySettings, params: PyTree, batch: PyTree,
                    key: jax.Array, state: tuple) -> tuple[Record, tuple]:
  """SLQ nodes and weights (`slq.slq`)."""
  matvec, n, dtype = _operator(loss_fn, params, batch)
  out = slq.slq(matvec, n, dtype, key, num_probes=settings.probes, num_steps=settings.steps,
                probe=settings.probe)
  return {"density": {"nodes": out["nodes"], "weights": out["weights"]},
          "density_hvps": out["hvps"]}, state


def measure_per_layer(loss_fn: LossFn, settings: PerLayerSettings, params: PyTree,
                      batch: PyTree, key: jax.Array, state: tuple) -> tuple[Record, tuple]:
  """λ_max(H_bb) (and tr(H_bb) ± SE) of every block (`blocks`)."""
  matvec, n, dtype = _operator(loss_fn, params, batch)
  partition = blocks.block_partition(params, settings.granularity)
  eig_key, trace_key = jax.random.split(key)
  tops = blocks.block_top_eigenvalues(matvec, n, dtype, eig_key, partition,
                                      max_steps=settings.max_steps, tol=settings.tol,
                                      min_steps=settings.min_steps)
  per_block = {"eigenvalue": tops["eigenvalue"], "residual": tops["residual"]}
  hvps = jnp.sum(tops["hvps"])
  if settings.trace_probes:
    traces = blocks.block_traces(matvec, n, dtype, trace_key, partition,
                                 num_probes=settings.trace_probes, batch_size=settings.batch_size)
    per_block.update(traces)
    hvps = hvps + settings.trace_probes
  layers = {name: {field: values[i] for field, values in per_block.items()}
            for i, name in enumerate(partition.names)}
  return {"per_layer": layers, "per_layer_hvps": hvps}, state


def init_min_eigenvalue(settings: MinEigenvalueSettings, params: PyTree) -> jax.Array:
  """A zero raveled vector: the first λ_min measurement starts at random."""
  del settings
  flat = ravel_pytree(params)[0]
  return jnp.zeros_like(flat)


def measure_min_eigenvalue(loss_fn: LossFn, settings: MinEigenvalueSettings, params: PyTree,
                           batch: PyTree, key: jax.Array, state: jax.Array
                           ) -> tuple[Record, jax.Array]:
  """λ_min and its residual (`extremes.min_eigenpair`); the state is its eigenvector."""
  matvec, _, dtype = _operator(loss_fn, params, batch)
  return extremes.min_eigenpair(matvec, state.astype(dtype), key, max_steps=settings.max_steps,
                                tol=settings.tol, min_steps=settings.min_steps)


class Kind(NamedTuple):
  """One measurement kind (module doc)."""
  settings: type
  measure: Callable[..., tuple[Record, Any]]
  init_state: Callable[[Any, PyTree], Any]
  record_keys: tuple[str, ...]
  seed: int                           # fold_in constant of its PRNG stream


KINDS: dict[str, Kind] = {
    "trace": Kind(TraceSettings, measure_trace, no_state,
                  ("trace", "trace_stderr", "trace_hvps"), 1),
    "density": Kind(DensitySettings, measure_density, no_state,
                    ("density", "density_hvps"), 2),
    "per_layer": Kind(PerLayerSettings, measure_per_layer, no_state,
                      ("per_layer", "per_layer_hvps"), 3),
    "min_eigenvalue": Kind(MinEigenvalueSettings, measure_min_eigenvalue, init_min_eigenvalue,
                           ("min_eigenvalue", "min_eigenvalue_residual", "min_eigenvalue_hvps"), 4),
}


def settings_error(name: str, settings: Any) -> str | None:
  """Why kind `name` cannot run with `settings`, in one line, or None (for flag checks before
  anything is compiled). Bounds that need the parameter count n (density steps ≤ n, the Hutch++
  sketch ≤ n) raise when the measurement is traced."""
  if name not in KINDS:
    return f"unknown curvature measurement {name!r}: expected one of {list(KINDS)}"
  if not isinstance(settings, KINDS[name].settings):
    return f"{name} needs {KINDS[name].settings.__name__}, got {type(settings).__name__}"
  if isinstance(settings, TraceSettings):
    if settings.method not in trace.METHODS:
      return f"unknown trace method {settings.method!r}: expected one of {trace.METHODS}"
    least = 4 if settings.method == "hutch++" else 2
    if settings.probes < least:
      return f"{settings.method} needs at least {least} trace probes, got {settings.probes}"
  if isinstance(settings, DensitySettings):
    if settings.probes < 1 or settings.steps < 1:
      return f"density probes and steps must be >= 1, got {settings.probes} and {settings.steps}"
    if settings.probe not in operators.PROBES:
      return f"unknown probe distribution {settings.probe!r}: expected one of {operators.PROBES}"
  if isinstance(settings, PerLayerSettings):
    if settings.granularity not in blocks.GRANULARITIES:
      return (f"unknown block granularity {settings.granularity!r}: expected one of "
              f"{blocks.GRANULARITIES}")
    if settings.trace_probes == 1 or settings.trace_probes < 0:
      return f"per-layer trace probes must be 0 (none) or >= 2, got {settings.trace_probes}"
  if isinstance(settings, (PerLayerSettings, MinEigenvalueSettings)):
    if settings.max_steps < 1 or not settings.tol > 0:
      return f"{name} needs max_steps >= 1 and tol > 0, got {settings.max_steps} and {settings.tol}"
  return None


def _check(settings: Mapping[str, Any]) -> None:
  """Raises ValueError with `settings_error`'s reason for the first kind that cannot run."""
  for name, s in settings.items():
    error = settings_error(name, s)
    if error:
      raise ValueError(error)


def init_states(settings: Mapping[str, Any], params: PyTree) -> dict[str, Any]:
  """The first state of every requested kind."""
  _check(settings)
  return {name: KINDS[name].init_state(s, params) for name, s in settings.items()}


def measure_curvature(loss_fn: LossFn, settings: Mapping[str, Any], params: PyTree, batch: PyTree,
                      key: jax.Array, states: Mapping[str, Any]) -> tuple[Record, dict[str, Any]]:
  """Runs every requested kind; returns the merged record and the new states (pure)."""
  _check(settings)
  record, new_states = {}, {}
  with jax.default_matmul_precision(PRECISION):
    for name, s in settings.items():
      kind = KINDS[name]
      out, new_states[name] = kind.measure(loss_fn, s, params, batch,
                                           jax.random.fold_in(key, kind.seed), states[name])
      record.update(out)
  return record, new_states


def make_curvature_measure(loss_fn: LossFn, settings: Mapping[str, Any]
                           ) -> Callable[[PyTree, PyTree, jax.Array, Any], tuple[Record, Any]]:
  """`measure_curvature` jitted once: `(params, batch, key, states) -> (record, states)`."""
  settings = dict(settings)
  _check(settings)
  jitted = jax.jit(lambda params, batch, key, states: measure_curvature(
      loss_fn, settings, params, batch, key, states))

  def run(params: PyTree, batch: PyTree, key: jax.Array, states: Any) -> tuple[Record, Any]:
    with jax.default_matmul_precision(PRECISION):
      return jitted(params, batch, key, states)
  return run
