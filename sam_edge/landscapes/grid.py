"""The loss over a grid of points of a line or plane through θ, evaluated on the device.

For directions d₁ (, d₂) and axis values a_i (, b_j):

    1-D:  values[i]    = L(θ + a_i d₁, data)
    2-D:  values[j, i] = L(θ + a_i d₁ + b_j d₂, data)       (rows: the second axis)

All points go through one jitted function: `jax.lax.map` over the points, `chunk` of them at a
time under `vmap`, so the device evaluates `chunk` shifted copies of the network on the same
data at once and the memory is that of `chunk` forward passes. θ, the directions and the data
are arguments of the compiled function, never constants baked into it.
"""

from typing import Callable, Sequence

import jax
import numpy as np

from sam_edge.curvature.hvp import LossFn
from sam_edge.pytree import PyTree


def default_chunk() -> int:
  """Grid points per vmapped batch when not given: 1 on a CPU, where XLA's batched matrix
  products of `chunk` weight copies run slower than one point at a time, 16 on an accelerator."""
  return 1 if jax.default_backend() == "cpu" else 16


def axis(lo: float, hi: float, n: int) -> np.ndarray:
  """n ≥ 2 evenly spaced values from lo to hi, with a value within rounding of 0 set to 0 exactly
  (so that an odd grid over a symmetric range holds θ itself)."""
  values = np.linspace(lo, hi, n)
  values[np.abs(values) <= 1e-12 * (hi - lo)] = 0.0
  return values


def coordinates(axes: Sequence[np.ndarray]) -> np.ndarray:
  """[N, k]: every grid point's coordinates, the first axis varying fastest (row-major over the
  values' shape [len(axes[1]), len(axes[0])] in 2-D)."""
  if len(axes) == 1:
    return np.asarray(axes[0], np.float64)[:, None]
  a, b = np.meshgrid(axes[0], axes[1])                 # both [len(b), len(a)]
  return np.stack([a.ravel(), b.ravel()], axis=-1)


def shifted(params: PyTree, vectors: Sequence[PyTree], c: jax.Array) -> PyTree:
  """θ + Σ_k c_k d_k, leaf by leaf, in each leaf's dtype."""
  return jax.tree.map(
      lambda w, *ds: (w + sum(c[k] * d for k, d in enumerate(ds))).astype(w.dtype),
      params, *vectors)


def losses_fn(loss: LossFn, chunk: int) -> Callable[..., jax.Array]:
  """`(params, data, vectors, coords [N, k]) -> [N]`: the loss at every point, `chunk` points
  per vmapped batch (module doc), jitted."""
  def fn(params, data, vectors, coords):
    return jax.lax.map(lambda c: loss(shifted(params, vectors, c), data), coords,
                       batch_size=chunk)
  return jax.jit(fn)


def evaluate(loss: LossFn, params: PyTree, data: PyTree, vectors: Sequence[PyTree],
             axes: Sequence[np.ndarray], chunk: int) -> np.ndarray:
  """The loss on the grid spanned by `axes` along `vectors` (one axis per vector), `chunk` points
  at a time (0: `default_chunk()`): shape
  [len(axes[0])] in 1-D, [len(axes[1]), len(axes[0])] in 2-D (module doc)."""
  if len(axes) != len(vectors):
    raise ValueError(f"{len(axes)} axes for {len(vectors)} directions")
  coords = coordinates(axes)
  dtype = jax.tree.leaves(params)[0].dtype
  chunk = min(chunk or default_chunk(), len(coords))
  values = losses_fn(loss, chunk)(params, data, tuple(vectors), coords.astype(dtype))
  shape = tuple(len(x) for x in reversed(axes))
  return np.asarray(values, np.float64).reshape(shape)
