"""GD, the central flow and gradient flow side by side from the same initialisation, step by
step, as curves (numpy arrays indexed by the GD step t = 0..steps−1, each at time t):

  gd_loss, gd_lambda1             L and λ1 along GD
  flow_loss, flow_predicted_loss  the central flow's L(w(t)), and L + ½⟨Σ, UᵀHU⟩ averaged over
                                  the substeps of [t, t+1)
  flow_eigenvalues [T, k]         the flow's top-k Hessian eigenvalues (its S is column 0)
  flow_sigma [T, k, k]            Σ at the substep that starts at t
  flow_outsider_eigenvalue        λ_{k+1} at t: the largest eigenvalue outside the flow's block
                                  (at 2/η: more than k eigenvalues are at the edge)
  gradient_flow_loss              L along gradient flow
  distance_flow, distance_gradient_flow   ‖w_GD(t) − w_flow(t)‖, ‖w_GD(t) − w_gradient_flow(t)‖
  gd_displacement                 ‖w_GD(t) − w_0‖: the distance GD has travelled
  hvps                            the flow's eigensolver HVPs over that step (LOBPCG in the
                                  substeps, the block's refresh)
  seconds                         wall-clock seconds of steps 1.. (step 0 compiles)

Each of the three advances by one jitted function per GD step (the flows by `substeps` Euler
substeps in a `lax.scan`); the batch is an argument, never a baked-in constant.
"""

import functools
import time
from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from sam_edge.flows import substep
from sam_edge.flows.substep import Eigen, Loss


class Settings(NamedTuple):
  """The integration: η, GD steps, Euler substeps per step, k critical eigenvalues, the
  eigensolvers' budget and tolerance."""
  step_size: float
  steps: int
  substeps: int = 4
  critical: int = 3
  eigen: Eigen = Eigen()


class Block(NamedTuple):
  """The flow's warm eigenvector block [k, n] (rows) and the outsider [n] it is checked
  against once per step (`substep.refresh_block`)."""
  vectors: jax.Array
  outsider: jax.Array


def flow_step(loss: Loss, s: Settings, w: jax.Array, block: Block, batch: Any,
              key: jax.Array) -> tuple[jax.Array, Block, substep.FlowPoint]:
  """One GD step's worth (t → t+1) of the central flow: the block refreshed against the rest of
  the spectrum (skipped where n ≤ 5k: the substeps solve those exactly), then `s.substeps` Euler
  substeps; returns w(t+1), the block, and what the first substep saw (at time t) with the HVPs
  summed and the predicted loss averaged over the substeps: the flow's time-averaged loss over
  [t, t+1) (Σ, set afresh at each substep, moves between substeps as the gap 2/η − λ_i is
  corrected)."""
  refresh_key, key = jax.random.split(key)
  vectors, outsider = block
  if 5 * s.critical < w.shape[0]:
    vectors, outsider, outside, extra = substep.refresh_block(loss, w, batch, vectors, outsider,
                                                              refresh_key, s.eigen)
  else:
    outside = substep.outsider_eigenvalue(loss, w, batch, s.critical)
    extra = jnp.asarray(w.shape[0], jnp.int32)

  def body(carry, k):
    w, vectors = carry
    w, vectors, point = substep.central_substep(loss, w, vectors, batch, k,
                                                step_size=s.step_size, dt=1.0 / s.substeps,
                                                eigen=s.eigen)
    return (w, vectors), point
  (w, vectors), points = jax.lax.scan(body, (w, vectors), jax.random.split(key, s.substeps))
  first = jax.tree.map(lambda x: x[0], points)
  return w, Block(vectors, outsider), first._replace(
      hvps=jnp.sum(points.hvps) + extra, predicted_loss=jnp.mean(points.predicted_loss),
      outsider=outside)


def gradient_flow_step(loss: Loss, s: Settings, w: jax.Array, batch: Any
                       ) -> tuple[jax.Array, jax.Array]:
  """One GD step's worth of gradient flow: (w(t+1), L(w(t)))."""
  def body(w, _):
    return substep.gradient_substep(loss, w, batch, step_size=s.step_size, dt=1.0 / s.substeps)
  w, values = jax.lax.scan(body, w, None, length=s.substeps)
  return w, values[0]


COLD_BUDGET = 4      # the first block's Lanczos budget, in multiples of the per-substep one


def first_block(loss: Loss, w0: jax.Array, batch: Any, s: Settings, key: jax.Array) -> Block:
  """The flow's first block: the top k + 1 eigenvectors at w0 by Lanczos from a random vector
  with COLD_BUDGET times the per-substep HVP budget, the k + 1-th as the outsider (LOBPCG from a
  random block converges little in the few iterations a substep affords; from then on each
  substep starts from the last block)."""
  n = w0.shape[0]
  k = min(s.critical + 1, n)
  zeros = jnp.zeros((k, n), w0.dtype)
  eigen = s.eigen._replace(max_steps=COLD_BUDGET * s.eigen.max_steps)
  solve = jax.jit(lambda w, b, key: substep.eigenpairs(loss, w, b, zeros, key, eigen).vectors)
  vectors = solve(w0, batch, key)
  outsider = vectors[s.critical] if k > s.critical else jnp.zeros_like(w0)
  return Block(vectors[:s.critical], outsider)


def run(loss: Loss, w0: jax.Array, batch: Any, s: Settings, key: jax.Array,
        log: Callable[[str], None] = print) -> dict[str, np.ndarray]:
  """The curves of the module doc over `s.steps` GD steps from `w0`."""
  statics = {"step_size": s.step_size, "eigen": s.eigen}
  gd = jax.jit(functools.partial(substep.gd_step, loss, **statics))
  central = jax.jit(functools.partial(flow_step, loss, s))
  gradient = jax.jit(functools.partial(gradient_flow_step, loss, s))
  distances = jax.jit(lambda gd, cf, gf, start: {
      "distance_flow": jnp.linalg.norm(gd - cf), "distance_gradient_flow": jnp.linalg.norm(gd - gf),
      "gd_displacement": jnp.linalg.norm(gd - start)})
  w_gd, w_cf, w_gf = w0, w0, w0
  v_gd = jnp.zeros_like(w0)
  block = first_block(loss, w0, batch, s, jax.random.fold_in(key, s.steps))
  rows: list[dict] = []
  start = last = time.perf_counter()
  for t in range(s.steps):
    gd_key, flow_key = jax.random.split(jax.random.fold_in(key, t))
    row = distances(w_gd, w_cf, w_gf, w0)
    w_gd, row["gd_loss"], row["gd_lambda1"], v_gd = gd(w_gd, v_gd, batch, gd_key)
    w_cf, block, point = central(w_cf, block, batch, flow_key)
    w_gf, row["gradient_flow_loss"] = gradient(w_gf, batch)
    row.update(flow_loss=point.loss, flow_predicted_loss=point.predicted_loss,
               flow_eigenvalues=point.eigenvalues, flow_sigma=point.sigma, hvps=point.hvps,
               flow_outsider_eigenvalue=point.outsider)
    rows.append(jax.device_get(row))
    if t == 0:
      compiled = time.perf_counter()          # the cost per step leaves out compilation
    if not all(np.all(np.isfinite(v)) for name, v in rows[-1].items()
               if name != "flow_outsider_eigenvalue"):          # −inf where n ≤ k
      log(f"step {t}: a value is not finite (GD or a flow diverged); stopping here")
      break
    now = time.perf_counter()
    if now - last > 10 or t == s.steps - 1:
      last = now
      r = rows[-1]
      log(f"step {t + 1}/{s.steps}: GD loss {r['gd_loss']:.5g} λ1 {r['gd_lambda1']:.4g}; flow S "
          f"{r['flow_eigenvalues'][0]:.4g} (2/η = {2 / s.step_size:.4g}), predicted loss "
          f"{r['flow_predicted_loss']:.5g}; ‖w_GD − w_flow‖ {r['distance_flow']:.3g}, "
          f"gradient flow {r['distance_gradient_flow']:.3g}, GD travelled "
          f"{r['gd_displacement']:.3g} ({now - start:.0f} s)")
  curves = {name: np.stack([np.asarray(r[name]) for r in rows]) for name in rows[0]}
  curves["step"] = np.arange(len(rows))
  curves["seconds"] = np.array(time.perf_counter() - compiled)
  return curves
