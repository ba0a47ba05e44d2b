"""Curvature beyond λ1 against dense matrices (float64): trace, SLQ density, blocks, λ_min.

Operators are dense symmetric matrices with known spectra (Q diag(λ) Qᵀ) and the Hessian of a
tiny tanh MLP (74 parameters) from `jax.hessian` on the raveled parameters.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.stats

from sam_edge.curvature import blocks, extremes, hvp, operators, registry, slq, spectrum, trace
from sam_edge.curvature.kind import Inputs
from sam_edge.curvature.kinds.batch_sharpness import BatchSharpnessSettings
from sam_edge.curvature.kinds.density import DensitySettings
from sam_edge.curvature.kinds.gauss_newton import GaussNewtonSettings
from sam_edge.curvature.kinds.min_eigenvalue import MinEigenvalueSettings
from sam_edge.curvature.kinds.per_layer import PerLayerSettings
from sam_edge.curvature.kinds.self_stabilization import SelfStabilizationSettings
from sam_edge.curvature.kinds.trace import TraceSettings
from sam_edge.curvature.objective import Objective
from sam_edge.data import batching
from tests.helpers import dense_hessian, symmetric_with_spectrum

pytestmark = pytest.mark.usefixtures("x64")


def dense_matvec(matrix):
  a = jnp.asarray(matrix)
  return lambda v: a @ v


def tiny_mlp_problem(seed=0, flax_root=False):
  """A 6-5-4-3 tanh MLP (74 parameters), loss mean_b Σ_c (logit − onehot)², 20 examples."""
  rng = np.random.default_rng(seed)
  layers = {"Dense_0": {"kernel": rng.normal(size=(6, 5)), "bias": rng.normal(size=5) * 0.1},
            "Dense_1": {"kernel": rng.normal(size=(5, 4)) / 2, "bias": rng.normal(size=4) * 0.1},
            "Dense_2": {"kernel": rng.normal(size=(4, 3)) / 2, "bias": np.zeros(3)}}
  params = jax.tree.map(jnp.asarray, layers)
  if flax_root:
    params = {"params": params}
  batch = {"x": jnp.asarray(rng.normal(size=(20, 6))), "y": jnp.asarray(rng.integers(0, 3, 20))}

  objective = Objective(tiny_mlp_logits(flax_root), sum_squared_error)
  return objective.loss, params, batch


def tiny_mlp_logits(flax_root=False):
  def forward(params, batch):
    p = params["params"] if flax_root else params
    h = jnp.tanh(batch["x"] @ p["Dense_0"]["kernel"] + p["Dense_0"]["bias"])
    h = jnp.tanh(h @ p["Dense_1"]["kernel"] + p["Dense_1"]["bias"])
    return h @ p["Dense_2"]["kernel"] + p["Dense_2"]["bias"]
  return forward


def sum_squared_error(logits, batch):
  return jnp.mean(jnp.sum((logits - jax.nn.one_hot(batch["y"], 3)) ** 2, axis=-1))


def tiny_objective(flax_root=False):
  return Objective(tiny_mlp_logits(flax_root), sum_squared_error)


def mlp_matvec():
  loss_fn, params, batch = tiny_mlp_problem()
  matvec, flat, _ = hvp.operator(loss_fn, params, batch)
  return matvec, flat.shape[0], dense_hessian(loss_fn, params, batch)


DECAYING = 1.0 / np.arange(1, 301)            # tr = H_300 ≈ 6.28, ||A||_F² ≈ 1.64


# ---------------------------------------------------------------------------------------------
# Trace.


@pytest.mark.parametrize("method", tuple(trace.ESTIMATORS))
def test_trace_of_a_decaying_spectrum_is_within_three_standard_errors(method):
  """K = 201: Hutchinson's SE ≈ sqrt(2·1.64/201) ≈ 0.13, 2% of the trace 6.28."""
  matrix = symmetric_with_spectrum(DECAYING)
  out = jax.jit(lambda key: trace.estimate_trace(dense_matvec(matrix), 300, jnp.float64, key,
                                                 num_probes=201, method=method))(
                                                     jax.random.PRNGKey(0))
  true = np.trace(matrix)
  assert 0 < float(out["trace_stderr"]) < 0.03 * true
  assert abs(float(out["trace"]) - true) <= 3 * float(out["trace_stderr"])
  assert int(out["trace_hvps"]) == 201


@pytest.mark.slow
@pytest.mark.parametrize("method", tuple(trace.ESTIMATORS))
def test_trace_of_the_mlp_hessian_is_within_three_standard_errors(method):
  matvec, n, h = mlp_matvec()
  out = jax.jit(lambda key: trace.estimate_trace(matvec, n, jnp.float64, key, num_probes=60,
                                                 method=method))(jax.random.PRNGKey(1))
  true = np.trace(h)
  assert 0 < float(out["trace_stderr"]) < 0.1 * abs(true)
  assert abs(float(out["trace"]) - true) <= 3 * float(out["trace_stderr"])


@pytest.mark.parametrize("method", tuple(trace.ESTIMATORS))
def test_trace_standard_error_is_honest_over_many_seeds(method):
  """Over 300 seeds the z-scores (t̂ − tr)/SE have mean ≈ 0 and spread ≈ 1 (a t-distribution
  with r − 1 ≥ 19 degrees of freedom: std ≤ 1.06); an SE off by a factor 1.3 fails."""
  matrix = symmetric_with_spectrum(np.concatenate([DECAYING[:290], -DECAYING[:10]]), seed=4)
  estimate = jax.jit(jax.vmap(lambda key: trace.estimate_trace(
      dense_matvec(matrix), 300, jnp.float64, key, num_probes=60, method=method)))
  out = estimate(jax.random.split(jax.random.PRNGKey(2), 300))
  z = (np.asarray(out["trace"]) - np.trace(matrix)) / np.asarray(out["trace_stderr"])
  assert abs(z.mean()) < 0.2
  assert 0.85 < z.std() < 1.2
  assert np.mean(np.abs(z) <= 3) >= 0.97


def test_hutch_plus_plus_beats_hutchinson_on_a_fast_decaying_spectrum():
  matrix = symmetric_with_spectrum(1.0 / np.arange(1, 301) ** 2)
  ses = {method: float(jax.jit(lambda key, method=method: trace.estimate_trace(
      dense_matvec(matrix), 300, jnp.float64, key, num_probes=90,
      method=method))(jax.random.PRNGKey(3))["trace_stderr"]) for method in tuple(trace.ESTIMATORS)}
  assert ses["hutch++"] < ses["hutchinson"] / 5


def test_hutch_plus_plus_is_exact_when_the_sketch_holds_the_range():
  matrix = symmetric_with_spectrum(np.concatenate([[5.0, 3.0, -2.0, 1.0], np.zeros(96)]))
  out = trace.hutch_plus_plus(dense_matvec(matrix), 100, jnp.float64, jax.random.PRNGKey(0),
                              num_probes=30)
  assert float(out["trace"]) == pytest.approx(7.0, abs=1e-10)
  assert float(out["trace_stderr"]) < 1e-10


def test_hutch_plus_plus_split_and_bad_budgets():
  assert trace.hutch_plus_plus_split(30) == (10, 10)
  assert trace.hutch_plus_plus_split(31) == (10, 11)
  matvec = dense_matvec(np.eye(10))
  with pytest.raises(ValueError, match="at least 4"):
    trace.hutch_plus_plus(matvec, 10, jnp.float64, jax.random.PRNGKey(0), num_probes=3)
  with pytest.raises(ValueError, match="at least 2"):
    trace.hutchinson(matvec, 10, jnp.float64, jax.random.PRNGKey(0), num_probes=1)
  with pytest.raises(ValueError, match="trace method"):
    trace.estimate_trace(matvec, 10, jnp.float64, jax.random.PRNGKey(0), num_probes=9,
                         method="xtrace")


# ---------------------------------------------------------------------------------------------
# Stochastic Lanczos quadrature.


def test_gauss_quadrature_matches_the_moments_of_the_probe_measure():
  """m Lanczos steps: Σ_j w_j θ_j^k = q̂ᵀ H^k q̂ for k ≤ 2m − 1 (Gauss quadrature)."""
  matrix = symmetric_with_spectrum(np.linspace(-1, 2, 80) + 0.3 * np.sin(np.arange(80)))
  q = np.random.default_rng(5).normal(size=80)
  q /= np.linalg.norm(q)
  m = 6
  nodes, weights = slq.gauss_quadrature(*slq.lanczos_tridiagonal(
      dense_matvec(matrix), jnp.asarray(q), jax.random.PRNGKey(0), m))
  assert float(jnp.sum(weights)) == pytest.approx(1.0, abs=1e-12)
  for k in range(2 * m):
    exact = q @ np.linalg.matrix_power(matrix, k) @ q
    assert float(jnp.sum(weights * nodes ** k)) == pytest.approx(exact, rel=1e-9, abs=1e-12)


def slq_w1_bound(eigenvalues, num_probes, num_steps):
  """The expected W1 between SLQ (P Rademacher probes, m steps) and the eigenvalue measure μ:

    * quadrature: for one probe q, Gauss quadrature with m nodes is exact up to degree 2m − 1, so
      for a 1-Lipschitz f, |∫f dμ_q − ∫f dμ̂_q| ≤ 2 E_{2m−1}(f) ≤ 2·πL/(8m) (Jackson's theorem,
      L = λ_max − λ_min); W1 is the sup over such f, and convex, so ≤ πL/(4m) for the mixture;
    * probes: F̂(t) = (1/P) Σ_p z_pᵀ Π_t z_p / n with Π_t the spectral projector on (−∞, t] of
      rank nF(t); Var(zᵀΠz) = 2(||Π||_F² − Σ Π_ii²) ≤ 2 rank Π, for Π_t and for I − Π_t, so
      E|F̂(t) − F(t)| ≤ sqrt(2 min(F, 1 − F)/(nP)) and E W1 ≤ ∫ sqrt(2 min(F, 1 − F)/(nP)) dt.
  """
  lam = np.sort(np.asarray(eigenvalues))
  n = lam.size
  f = np.arange(1, n) / n                               # F on [λ_i, λ_{i+1})
  probe_term = np.sum(np.sqrt(2 * np.minimum(f, 1 - f) / (n * num_probes)) * np.diff(lam))
  return np.pi * (lam[-1] - lam[0]) / (4 * num_steps) + probe_term


@pytest.mark.parametrize("probe", operators.PROBES)
def test_slq_density_is_close_to_the_eigenvalue_distribution_in_wasserstein_1(probe):
  """W1 within its bound (`slq_w1_bound`: 0.18 here, 2.4% of the width L = 7.5, mostly the
  quadrature term πL/(4m); the measured W1 is about 0.037, and about halves when m doubles). A
  spectrum shifted by 0.3 is 0.3 away from the truth, and SLQ is much closer to the truth than to
  it. Gaussian probes normalised to the sphere obey the same bound: Var(qᵀΠq) for a uniform unit
  q is 2r(n − r)/(n²(n + 2)) ≤ 2 min(r, n − r)/n², r = rank Π."""
  rng = np.random.default_rng(6)
  eigenvalues = np.concatenate([rng.uniform(-1, 1, 390) * np.abs(rng.normal(size=390)),
                                [2.0, 3.0, 4.0, 4.5, 5.0, 1.5, 1.2, -0.8, -0.9, 1.1]])
  matrix = symmetric_with_spectrum(eigenvalues, seed=7)
  num_probes, num_steps = 10, 40
  out = jax.jit(lambda key: slq.slq(dense_matvec(matrix), 400, jnp.float64, key,
                                    num_probes=num_probes, num_steps=num_steps, probe=probe))(
                                        jax.random.PRNGKey(0))
  assert out["nodes"].shape == out["weights"].shape == (num_probes, num_steps)
  np.testing.assert_allclose(np.sum(out["weights"], axis=1), 1.0, atol=1e-12)
  assert int(out["hvps"]) == num_probes * num_steps
  atoms, masses = spectrum.slq_measure(out["nodes"], out["weights"])
  w1 = spectrum.wasserstein1(atoms, eigenvalues, masses)
  bound = slq_w1_bound(eigenvalues, num_probes, num_steps)
  assert bound < 0.03 * (eigenvalues.max() - eigenvalues.min())
  assert w1 <= bound
  wrong = spectrum.wasserstein1(atoms, eigenvalues + 0.3, masses)
  assert wrong > 5 * w1 and wrong > 0.3 - w1 - 1e-12


def test_slq_of_the_mlp_hessian_against_eigh():
  matvec, n, h = mlp_matvec()
  eigenvalues = np.linalg.eigvalsh(h)
  out = jax.jit(lambda key: slq.slq(matvec, n, jnp.float64, key, num_probes=50, num_steps=40))(
      jax.random.PRNGKey(0))
  atoms, masses = spectrum.slq_measure(out["nodes"], out["weights"])
  w1 = spectrum.wasserstein1(atoms, eigenvalues, masses)
  assert w1 <= slq_w1_bound(eigenvalues, 50, 40)
  assert spectrum.wasserstein1(atoms, eigenvalues + 0.5, masses) > 5 * w1      # shifted
  assert spectrum.wasserstein1(atoms, -eigenvalues, masses) > 5 * w1           # sign error


def test_slq_survives_an_invariant_krylov_space():
  """H = diag(1, 2, 3, …) has 3 distinct eigenvalues: Lanczos breaks down after 3 steps. The
  later nodes carry weight 0, the weighted nodes are eigenvalues, and zᵀHz/n = 2 exactly."""
  matrix = np.diag(np.tile([1.0, 2.0, 3.0], 20))
  out = slq.slq(dense_matvec(matrix), 60, jnp.float64, jax.random.PRNGKey(0), num_probes=3,
                num_steps=10)
  nodes, weights = np.asarray(out["nodes"]), np.asarray(out["weights"])
  assert np.all(np.isfinite(nodes)) and np.all(np.isfinite(weights))
  np.testing.assert_allclose(weights.sum(axis=1), 1.0, atol=1e-12)
  weighted = nodes[weights > 1e-12]
  assert np.min(np.abs(weighted[:, None] - np.array([1.0, 2.0, 3.0])), axis=1).max() < 1e-10
  np.testing.assert_allclose(np.sum(weights * nodes, axis=1), 2.0, atol=1e-12)
  scaled = slq.slq(dense_matvec(2 * np.eye(30)), 30, jnp.float64, jax.random.PRNGKey(1),
                   num_probes=1, num_steps=5)
  assert float(jnp.sum(scaled["weights"] * scaled["nodes"])) == pytest.approx(2.0, abs=1e-12)


def test_slq_rejects_more_steps_than_the_dimension():
  with pytest.raises(ValueError, match="density steps"):
    slq.slq(dense_matvec(np.eye(5)), 5, jnp.float64, jax.random.PRNGKey(0), num_probes=1,
            num_steps=6)


def test_wasserstein1_matches_scipy_and_a_shift():
  rng = np.random.default_rng(8)
  x, y = rng.normal(size=30), rng.normal(size=17) + 0.5
  a, b = rng.uniform(size=30), rng.uniform(size=17)
  assert spectrum.wasserstein1(x, y, a, b) == pytest.approx(
      scipy.stats.wasserstein_distance(x, y, a, b), rel=1e-12)
  assert spectrum.wasserstein1(x, x + 0.25) == pytest.approx(0.25, rel=1e-12)
  assert spectrum.wasserstein1(x, x, a, a) == pytest.approx(0.0, abs=1e-15)


def test_smoothed_density_integrates_to_one():
  nodes = np.array([[-1.0, 0.0, 2.0], [0.5, 1.0, 3.0]])
  weights = np.array([[0.2, 0.5, 0.3], [0.6, 0.3, 0.1]])
  sigma = spectrum.default_sigma(nodes)
  grid = spectrum.density_grid(nodes, sigma, 4000)
  density = spectrum.smoothed_density(nodes, weights, grid, sigma)
  assert spectrum.default_sigma(nodes) == pytest.approx(0.04)
  assert grid[0] == pytest.approx(-1.2) and grid[-1] == pytest.approx(3.2)
  assert np.trapezoid(density, grid) == pytest.approx(1.0, abs=1e-6)
  peak = grid[np.argmax(density)]
  assert peak == pytest.approx(0.5, abs=0.01)              # the heaviest atom (0.6/2 = 0.3)


# ---------------------------------------------------------------------------------------------
# Per-layer blocks.


def test_block_partition_names_modules_and_leaves():
  _, params, _ = tiny_mlp_problem(flax_root=True)
  modules = blocks.block_partition(params)
  assert modules.names == ("Dense_0", "Dense_1", "Dense_2")
  assert modules.bounds == ((0, 35), (35, 59), (59, 74))
  leaves = blocks.block_partition(params, "leaf")
  assert leaves.names == ("Dense_0/bias", "Dense_0/kernel", "Dense_1/bias", "Dense_1/kernel",
                          "Dense_2/bias", "Dense_2/kernel")
  assert leaves.bounds[:2] == ((0, 5), (5, 35)) and leaves.bounds[-1] == (62, 74)
  with pytest.raises(ValueError, match="granularity"):
    blocks.block_partition(params, "layer")


@pytest.mark.parametrize("granularity", blocks.GRANULARITIES)
def test_block_top_eigenvalues_match_dense_sub_blocks(granularity):
  """Includes the output bias block, H_bb = 2I: Lanczos breaks down at once and restarts."""
  loss_fn, params, batch = tiny_mlp_problem()
  h = dense_hessian(loss_fn, params, batch)
  partition = blocks.block_partition(params, granularity)
  matvec, flat, _ = hvp.operator(loss_fn, params, batch)
  out = jax.jit(lambda key: blocks.block_top_eigenvalues(
      matvec, flat.shape[0], jnp.float64, key, partition, max_steps=40, tol=1e-10))(
          jax.random.PRNGKey(0))
  expected = [np.linalg.eigvalsh(h[s:e, s:e])[-1] for s, e in partition.bounds]
  np.testing.assert_allclose(out["eigenvalue"], expected, rtol=1e-5)
  assert np.all(np.asarray(out["residual"]) <= 1e-8)
  if granularity == "leaf":
    assert float(out["eigenvalue"][4]) == pytest.approx(2.0, rel=1e-10)     # Dense_2/bias


def test_block_top_eigenvalue_of_a_negative_definite_block():
  """λ_max(H_bb) = −1 < 0: the restart after the 3-dimensional block is exhausted sees only
  c_b ∈ [−3, −1] outside it, never a spurious 0."""
  matrix = symmetric_with_spectrum(np.linspace(-2, 5, 23), seed=9)
  matrix[20:, :] = matrix[:, 20:].T.copy() * 0.1
  matrix[:, 20:] = matrix[20:, :].T
  matrix[20:, 20:] = -np.diag([1.0, 2.0, 3.0])
  partition = blocks.Blocks(("a", "b"), ((0, 20), (20, 23)))
  out = jax.jit(lambda key: blocks.block_top_eigenvalues(
      dense_matvec(matrix), 23, jnp.float64, key, partition, max_steps=23, tol=1e-10))(
          jax.random.PRNGKey(0))
  assert float(out["eigenvalue"][1]) == pytest.approx(-1.0, rel=1e-10)
  assert float(out["eigenvalue"][0]) == pytest.approx(np.linalg.eigvalsh(matrix[:20, :20])[-1],
                                                      rel=1e-10)


def test_block_traces_match_dense_sub_blocks_within_three_standard_errors():
  loss_fn, params, batch = tiny_mlp_problem()
  h = dense_hessian(loss_fn, params, batch)
  partition = blocks.block_partition(params)
  matvec, flat, _ = hvp.operator(loss_fn, params, batch)
  key = jax.random.PRNGKey(4)
  out = jax.jit(lambda key: blocks.block_traces(matvec, flat.shape[0], jnp.float64, key,
                                                partition, num_probes=1500))(key)
  expected = np.array([np.trace(h[s:e, s:e]) for s, e in partition.bounds])
  se = np.asarray(out["trace_stderr"])
  assert np.all(se > 0) and np.all(se < 0.1 * np.abs(expected))
  assert np.all(np.abs(np.asarray(out["trace"]) - expected) <= 3 * se)
  # The same probes give Hutchinson's full estimate: the block samples sum to zᵀHz.
  full = jax.jit(lambda key: trace.hutchinson(matvec, flat.shape[0], jnp.float64, key,
                                              num_probes=1500))(key)
  assert float(jnp.sum(out["trace"])) == pytest.approx(float(full["trace"]), rel=1e-10)


# ---------------------------------------------------------------------------------------------
# The most negative eigenvalue.


def test_min_eigenvalue_of_an_indefinite_matrix():
  rng = np.random.default_rng(10)
  eigenvalues = np.concatenate([[5.0, 3.0, -1.5, -1.4], rng.uniform(-1, 2, 96)])
  matrix = symmetric_with_spectrum(eigenvalues, seed=11)
  solve = jax.jit(lambda v, key: extremes.min_eigenpair(dense_matvec(matrix), v, key,
                                                        max_steps=100, tol=1e-10))
  record, y = solve(jnp.zeros(100), jax.random.PRNGKey(0))
  assert float(record["min_eigenvalue"]) == pytest.approx(-1.5, rel=1e-6)
  direct = np.linalg.norm(matrix @ np.asarray(y) + 1.5 * np.asarray(y))
  assert float(record["min_eigenvalue_residual"]) <= 1.5e-10 * 1.01
  assert direct < 1e-8
  warm, _ = solve(y + 1e-4, jax.random.PRNGKey(1))
  assert float(warm["min_eigenvalue"]) == pytest.approx(-1.5, rel=1e-6)
  assert int(warm["min_eigenvalue_hvps"]) < int(record["min_eigenvalue_hvps"])


def test_min_eigenvalue_of_the_mlp_hessian():
  matvec, n, h = mlp_matvec()
  expected = np.linalg.eigvalsh(h)[0]
  assert expected < 0
  record, y = jax.jit(lambda v, key: extremes.min_eigenpair(matvec, v, key, max_steps=74,
                                                            tol=1e-10))(jnp.zeros(n),
                                                                        jax.random.PRNGKey(0))
  assert float(record["min_eigenvalue"]) == pytest.approx(expected, rel=1e-6)
  direct = np.linalg.norm(h @ np.asarray(y) - expected * np.asarray(y))
  assert direct < 1e-6 * abs(expected)


# ---------------------------------------------------------------------------------------------
# The registry.


def all_settings():
  return (("trace", TraceSettings(probes=12)),
          ("density", DensitySettings(probes=2, steps=10)),
          ("per_layer", PerLayerSettings(max_steps=30, tol=1e-10, trace_probes=8)),
          ("min_eigenvalue", MinEigenvalueSettings(max_steps=30, tol=1e-8)),
          ("gauss_newton", GaussNewtonSettings(max_steps=30, tol=1e-8)),
          ("batch_sharpness", BatchSharpnessSettings(batches=3)),
          ("self_stabilization", SelfStabilizationSettings()))


def full_inputs(objective, params, batch, u):
  """Everything a measurement hands its kinds: u, ∇L, plain descent's step, batches of 5."""
  n = batching.num_examples(batch)
  return Inputs(objective, params, batch, u, jax.grad(objective.loss)(params, batch),
                lambda d: d, lambda k: batching.take(batch, jax.random.choice(k, n, (5,), False)))


def jitted_kinds(objective, kinds):
  """`registry.measure_curvature` jitted once, as a measurement runs it."""
  return jax.jit(lambda params, batch, key, states: registry.measure_curvature(
      Inputs(objective, params, batch), kinds, key, states))


@pytest.mark.slow
def test_registry_measures_every_kind_once_compiled():
  objective = tiny_objective(flax_root=True)
  _, params, batch = tiny_mlp_problem(flax_root=True)
  traces = []

  def counted(params, batch):
    traces.append(1)
    return objective.forward(params, batch)

  settings = all_settings()
  counting = Objective(counted, sum_squared_error)
  measure = jax.jit(lambda params, batch, u, key, states: registry.measure_curvature(
      full_inputs(counting, params, batch, u), settings, key, states))
  states = registry.init_states(settings, params)
  u = jax.tree.map(jnp.ones_like, params)
  record, states = measure(params, batch, u, jax.random.PRNGKey(0), states)
  expected_keys = {k for kind in registry.KINDS for k in kind.record_keys}
  assert set(record) == expected_keys                 # every registered kind, once
  assert {name for name, _ in settings} == set(registry.BY_NAME)
  assert set(record["density"]) == {"nodes", "weights"}
  assert record["density"]["nodes"].shape == (2, 10)
  assert set(record["per_layer"]) == {"Dense_0", "Dense_1", "Dense_2"}
  assert set(record["per_layer"]["Dense_0"]) == {"eigenvalue", "residual", "trace", "trace_stderr"}
  assert states["min_eigenvalue"].shape == (74,)
  h = dense_hessian(objective.loss, params, batch)
  assert float(record["min_eigenvalue"]) == pytest.approx(np.linalg.eigvalsh(h)[0], rel=1e-6)
  assert int(record["trace_hvps"]) == 12
  assert int(record["per_layer_hvps"]) > 8
  assert int(record["batch_sharpness_batches"]) == 3
  assert record["batch_sharpness_momentum"] is None          # plain descent
  assert float(record["self_stabilization"]) == pytest.approx(
      float(record["sharpness_gradient_norm"]) ** 2)
  compiled = len(traces)
  moved = jax.tree.map(lambda p: p * 1.01, params)
  again, _ = measure(moved, batch, u, jax.random.PRNGKey(1), states)
  assert len(traces) == compiled                    # new values, no retrace
  assert float(again["trace"]) != float(record["trace"])


@pytest.mark.slow
def test_kinds_draw_independent_random_streams():
  objective = tiny_objective()
  _, params, batch = tiny_mlp_problem()
  key = jax.random.PRNGKey(3)
  alone = (("trace", TraceSettings(probes=12)),)
  together = alone + (("density", DensitySettings(probes=2, steps=5)),)
  a, _ = jitted_kinds(objective, alone)(params, batch, key, registry.init_states(alone, params))
  b, _ = jitted_kinds(objective, together)(params, batch, key,
                                            registry.init_states(together, params))
  assert float(a["trace"]) == float(b["trace"])


def test_registry_rejects_unknown_kinds_and_wrong_settings():
  with pytest.raises(ValueError, match="unknown curvature"):
    registry.init_states((("hessian_norm", TraceSettings()),), {})
  with pytest.raises(ValueError, match="TraceSettings"):
    registry.init_states((("trace", DensitySettings()),), {})


def test_problems_are_one_line_reasons_naming_the_flag():
  assert registry.problems(all_settings()) == []
  cases = {
      ("trace", TraceSettings(probes=3)): "--trace_probes: hutch++ needs at least 4",
      ("trace", TraceSettings(probes=1, method="hutchinson")): "at least 2",
      ("trace", TraceSettings(method="xtrace")): "--trace_method",
      ("density", DensitySettings(steps=0)): "--density_probes/--density_steps",
      ("per_layer", PerLayerSettings(trace_probes=1)): "--trace_probes: per-layer trace probes",
      ("min_eigenvalue", MinEigenvalueSettings(tol=0.0)): "--min_eigenvalue_max_steps",
      ("trace", DensitySettings()): "TraceSettings",
      ("hessian_norm", TraceSettings()): "unknown curvature",
  }
  for (name, settings), message in cases.items():
    found = registry.problems(((name, settings),))
    assert len(found) == 1 and message in found[0] and "\n" not in found[0]


def test_kinds_own_their_flags_and_need_no_jax():
  """Every kind declares its flags, its record keys and its figures without importing jax."""
  import subprocess
  import sys
  code = ("import sys; from sam_edge.curvature import registry; from sam_edge.plots import run; "
          "registry.all_options(); run.figure_outputs(registry.KINDS); "
          "assert 'jax' not in sys.modules, 'jax imported'")
  subprocess.run([sys.executable, "-c", code], check=True)
  names = [o.name for o in registry.all_options()]
  assert len(names) == len(set(names))
  keys = [k for kind in registry.KINDS for k in kind.record_keys]
  assert len(keys) == len(set(keys))
