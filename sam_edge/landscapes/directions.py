"""The directions a landscape is drawn along, as pytrees shaped like the parameters θ.

  * `filter_normalized` (Li et al. 2018, "Visualizing the loss landscape of neural nets"): a
    Gaussian direction d ~ N(0, I), each filter rescaled to the norm of the same filter of θ,
        d_f ← d_f · ‖θ_f‖ / (‖d_f‖ + 1e-10),
    where a filter is one output unit or channel: the slice [..., j] along the last axis of a
    weight with two or more axes (a Dense kernel [in, out]: column j; a Conv kernel
    [h, w, in, out]: the [h, w, in] block of output channel j). Leaves with at most one axis
    (biases, BatchNorm and LayerNorm scales and offsets) get d = 0, so the plot shows the
    weights' landscape at fixed biases and normalisation parameters, as Li et al. do.
  * `hessian`: the top two eigenvectors u₁, u₂ (largest algebraic eigenvalues λ₁ ≥ λ₂, unit
    norm) of ∇²L(θ), by the project's Lanczos (`curvature.lanczos`) on exact Hessian-vector
    products (`curvature.hvp`): the plane where the loss curves most, L ≈ L(θ) + ½(λ₁a² + λ₂b²)
    near θ (plus the gradient's part).
  * `runs_plane`: the plane through θ and two other runs θ_A, θ_B: d₁ = θ_A − θ and d₂ the part of
    θ_B − θ orthogonal to d₁ (one Gram–Schmidt step, not normalised), so θ sits at (0, 0), θ_A at
    (1, 0) and θ_B at (c, 1) with c = ⟨θ_B − θ, d₁⟩ / ‖d₁‖². In 1-D, the line θ → θ_A alone.
"""

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.flatten_util import ravel_pytree

from sam_edge.curvature import hvp, lanczos
from sam_edge.curvature.hvp import LossFn
from sam_edge.pytree import PyTree

FILTER_EPSILON = 1e-10


class Plane(NamedTuple):
  """Directions (one per plotted axis) and what they are, for the npz and the plot."""
  vectors: tuple                  # pytrees shaped like θ, one per axis
  description: str                # one line
  points: dict                    # {label: coordinates} of points to mark (θ at the origin)
  values: dict                    # numbers worth keeping (eigenvalues, norms), as floats


def filter_normalized(key: jax.Array, params: PyTree) -> PyTree:
  """d with each filter of norm ‖θ_f‖ and zero biases and normalisation parameters (module doc);
  the leaves' Gaussians come from `key` split once per leaf (in `jax.tree.leaves` order)."""
  leaves, treedef = jax.tree.flatten(params)
  keys = jax.random.split(key, max(len(leaves), 1))
  out = []
  for k, w in zip(keys, leaves):
    w = jnp.asarray(w)
    if w.ndim <= 1:
      out.append(jnp.zeros_like(w))
      continue
    d = jax.random.normal(k, w.shape, w.dtype)
    axes = tuple(range(w.ndim - 1))
    w_norm = jnp.sqrt(jnp.sum(w * w, axis=axes, keepdims=True))
    d_norm = jnp.sqrt(jnp.sum(d * d, axis=axes, keepdims=True))
    out.append(d * w_norm / (d_norm + FILTER_EPSILON))
  return jax.tree.unflatten(treedef, out)


def random_plane(key: jax.Array, params: PyTree, dims: int) -> Plane:
  """`dims` filter-normalised directions from independent halves of `key`."""
  keys = jax.random.split(key, dims)
  draw = jax.jit(filter_normalized)
  vectors = tuple(draw(k, params) for k in keys)
  return Plane(vectors, "filter-normalised Gaussian directions (Li et al. 2018)",
               {"θ": (0.0,) * dims}, {})


def hessian_eigenvectors(loss: LossFn, params: PyTree, data: PyTree, key: jax.Array, *, k: int,
                         max_steps: int, tol: float) -> lanczos.EigenResult:
  """The top-k eigenpairs of ∇²_θ loss(θ, data) at `params` (Lanczos from a random start drawn
  from `key`, exact HVPs), compiled once."""
  def solve(p, d, key):
    matvec, flat, _ = hvp.operator(loss, p, d)
    return lanczos.lanczos(matvec, jnp.zeros_like(flat), key, k=k, max_steps=max_steps, tol=tol)
  return jax.jit(solve)(params, data, key)


def hessian_plane(loss: LossFn, params: PyTree, data: PyTree, key: jax.Array, dims: int, *,
                  max_steps: int, tol: float) -> Plane:
  """The top `dims` unit Hessian eigenvectors of the loss at θ, each signed so that its
  largest-magnitude entry is positive (the eigensolver's sign is arbitrary)."""
  _, unravel = ravel_pytree(params)
  result = hessian_eigenvectors(loss, params, data, key, k=dims, max_steps=max_steps, tol=tol)
  vectors = []
  for v in np.asarray(result.vectors):
    v = v * (1.0 if v[np.argmax(np.abs(v))] >= 0 else -1.0)
    vectors.append(unravel(jnp.asarray(v)))
  eig = [float(x) for x in np.asarray(result.eigenvalues)]
  values = {f"lambda{i + 1}": x for i, x in enumerate(eig)}
  values.update({f"residual{i + 1}": float(r) for i, r in enumerate(np.asarray(result.residuals))})
  values["hvps"] = float(result.num_matvecs)
  text = ", ".join(f"λ{i + 1} = {x:.4g}" for i, x in enumerate(eig))
  return Plane(tuple(vectors), f"top Hessian eigenvectors (unit norm; {text})",
               {"θ": (0.0,) * dims}, values)


def runs_plane(params: PyTree, others: list, names: list[str]) -> Plane:
  """The line through θ = `params` and θ_A (one other run), or the plane through θ, θ_A and θ_B
  (two; module doc). Raises ValueError when θ_A = θ, or when the three are (numerically) on one
  line."""
  flat, unravel = ravel_pytree(params)
  u = ravel_pytree(others[0])[0] - flat
  uu = float(jnp.vdot(u, u))
  if uu == 0.0:
    raise ValueError(f"run {names[0]} has the same parameters as θ: no direction")
  if len(others) == 1:
    return Plane((unravel(u),), f"line from θ (0) to {names[0]} (1); d1 = θ_A − θ "
                 f"(‖d1‖ = {uu ** 0.5:.4g})", {"θ": (0.0,), names[0]: (1.0,)},
                 {"norm_d1": uu ** 0.5})
  w = ravel_pytree(others[1])[0] - flat
  c = float(jnp.vdot(w, u)) / uu
  v = w - c * u
  vv = float(jnp.vdot(v, v))
  if vv <= 1e-12 * float(jnp.vdot(w, w)):
    raise ValueError(f"θ, {names[0]} and {names[1]} lie on one line: no plane")
  points = {"θ": (0.0, 0.0), names[0]: (1.0, 0.0), names[1]: (c, 1.0)}
  values = {"norm_d1": uu ** 0.5, "norm_d2": vv ** 0.5, "c": c}
  return Plane((unravel(u), unravel(v)),
               f"plane through θ, {names[0]} (1, 0) and {names[1]} (c, 1); d1 = θ_A − θ "
               f"(‖d1‖ = {uu ** 0.5:.4g}), d2 = (θ_B − θ) ⊥ d1 (‖d2‖ = {vv ** 0.5:.4g})",
               points, values)
