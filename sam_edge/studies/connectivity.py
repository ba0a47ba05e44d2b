"""Mode connectivity between two trained networks w₀ and w₁ (Garipov et al. 2018, as the
taxonomy, Yang et al. 2021, measures it).

The quadratic Bezier curve with fixed endpoints and one bend θ,

    w(t) = (1 − t)² w₀ + 2 t (1 − t) θ + t² w₁,        t ∈ [0, 1],

has θ trained by SGD with momentum on the training loss at one t ~ U(0, 1) per batch:

    v ← μ v + ∇_θ L(w(t); batch),    θ ← θ − η_e v,

starting from the midpoint θ = (w₀ + w₁)/2 (the straight line), η_e the taxonomy's schedule
over epochs e of E: η for e/E ≤ 0.5, then linearly down to 0.01 η at e/E = 0.9, then 0.01 η.
Only θ moves: w(0) = w₀ and w(1) = w₁ whatever θ is.

With E(t) a training metric (error or loss) at w(t) on the ts {0, .25, .5, .75, 1},

    mc = (E(0) + E(1))/2 − E(t*),     t* = argmax_t |E(t) − (E(0) + E(1))/2|  (0 < t < 1),

so mc < 0 is a barrier (the curve is worse than its ends), mc ≈ 0 a connected pair and mc > 0 a
curve better than its ends. `line_barrier` is the same formula on the straight line
w₀ + t (w₁ − w₀), i.e. θ at the midpoint, untrained.
"""

import dataclasses
import functools
from typing import Any, Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from sam_edge.curvature.hvp import LossFn
from sam_edge.data import batching
from sam_edge.pytree import PyTree


@dataclasses.dataclass(frozen=True)
class CurveSettings:
  """How the bend is trained (defaults: the taxonomy's curve fitting, Yang et al. 2021)."""
  epochs: int = 100
  batch_size: int = 128
  step_size: float = 0.01
  momentum: float = 0.9
  ts: tuple[float, ...] = (0.0, 0.25, 0.5, 0.75, 1.0)


def bezier(w0: PyTree, theta: PyTree, w1: PyTree, t: Any) -> PyTree:
  """w(t) = (1 − t)² w₀ + 2 t (1 − t) θ + t² w₁, leaf by leaf."""
  return jax.tree.map(lambda a, b, c: (1 - t) ** 2 * a + 2 * t * (1 - t) * b + t ** 2 * c,
                      w0, theta, w1)


def midpoint(w0: PyTree, w1: PyTree) -> PyTree:
  """(w₀ + w₁)/2: the bend whose Bezier curve is the straight line w₀ + t (w₁ − w₀)."""
  return jax.tree.map(lambda a, b: 0.5 * (a + b), w0, w1)


def schedule(step_size: float, epoch: int, epochs: int) -> float:
  """η_e of epoch `epoch` (1-based) of `epochs` (module doc)."""
  alpha = epoch / epochs
  if alpha <= 0.5:
    return step_size
  if alpha <= 0.9:
    return step_size * (1.0 - (alpha - 0.5) / 0.4 * 0.99)
  return step_size * 0.01


@functools.partial(jax.jit, static_argnames=("loss", "momentum"))
def _epoch(carry: tuple[PyTree, PyTree], ends: tuple[PyTree, PyTree], arrays: PyTree,
           indices: jax.Array, ts: jax.Array, lr: jax.Array, *, loss: LossFn, momentum: float
           ) -> tuple[PyTree, PyTree]:
  """One epoch of SGD with momentum on `carry` = (θ, velocity) between `ends` = (w0, w1): step s
  takes the rows `indices[s]` and the point `ts[s]`."""
  w0, w1 = ends

  def step(carry, xs):
    th, v = carry
    idx, t = xs
    g = jax.grad(lambda b: loss(bezier(w0, b, w1, t), batching.take(arrays, idx)))(th)
    v = jax.tree.map(lambda vi, gi: momentum * vi + gi, v, g)
    return (jax.tree.map(lambda p, vi: p - lr * vi, th, v), v), None
  return jax.lax.scan(step, carry, (indices, ts))[0]


def fit_bend(loss: LossFn, w0: PyTree, w1: PyTree, arrays: PyTree, settings: CurveSettings,
             key: jax.Array) -> PyTree:
  """θ trained as in the module doc on `arrays` (the training set, on the device): each epoch a
  fresh permutation (the last incomplete batch dropped) and one t ~ U(0, 1) per batch, both
  from `key`. `loss` must be a stable object (a jit static argument: a new one recompiles)."""
  n = batching.num_examples(arrays)
  size = max(1, min(settings.batch_size, n))
  steps = n // size
  theta = midpoint(w0, w1)
  velocity = jax.tree.map(jnp.zeros_like, theta)
  for epoch in range(1, settings.epochs + 1):
    key, perm_key, t_key = jax.random.split(key, 3)
    indices = jax.random.permutation(perm_key, n)[:steps * size].reshape(steps, size)
    ts = jax.random.uniform(t_key, (steps,))
    lr = jnp.float32(schedule(settings.step_size, epoch, settings.epochs))
    theta, velocity = _epoch((theta, velocity), (w0, w1), arrays, indices, ts, lr, loss=loss,
                             momentum=settings.momentum)
  return theta


def along(measure: Callable[[PyTree], float], w0: PyTree, theta: PyTree, w1: PyTree,
          ts: Sequence[float]) -> list[float]:
  """[E(w(t)) for t in ts], with `measure` = E (e.g. the training error after recomputing the
  BatchNorm statistics at w(t))."""
  return [float(measure(bezier(w0, theta, w1, jnp.float32(t)))) for t in ts]


def barrier(values: Sequence[float]) -> float:
  """mc = (E₀ + E₁)/2 − E(t*), t* = argmax |E(t) − (E₀ + E₁)/2| over the interior points of
  `values` (E at increasing t from 0 to 1; module doc). 0 for a constant E; < 0 for a bump in
  the middle. The ends are left out of the argmax: at an end |E − mean| = |E₁ − E₀|/2, which
  would give mc = ±(E₁ − E₀)/2 with a sign set by which run comes first."""
  e = np.asarray(values, dtype=np.float64)
  mean_ends = 0.5 * (e[0] + e[-1])
  inner = e[1:-1] if len(e) > 2 else e
  return float(mean_ends - inner[int(np.argmax(np.abs(inner - mean_ends)))])


def connect(loss: LossFn, measure: Callable[[PyTree], float], w0: PyTree, w1: PyTree,
            arrays: PyTree, settings: CurveSettings, key: jax.Array) -> dict[str, Any]:
  """{"mc", "line_barrier", "curve": E on the curve at settings.ts, "line": E on the line}."""
  line = along(measure, w0, midpoint(w0, w1), w1, settings.ts)
  theta = fit_bend(loss, w0, w1, arrays, settings, key)
  curve = along(measure, w0, theta, w1, settings.ts)
  return {"mc": barrier(curve), "line_barrier": barrier(line), "curve": curve, "line": line}
