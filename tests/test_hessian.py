"""HVPs against jax.hessian, Lanczos against numpy.linalg.eigh (float64)."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.flatten_util import ravel_pytree

from sam_edge.curvature import eigensolvers, hvp, lanczos, power
from sam_edge.models import losses
from tests.helpers import dense_hessian, symmetric_with_spectrum

pytestmark = pytest.mark.usefixtures("x64")


def tiny_mlp_problem(activation=jnp.tanh, seed=0):
  """A 6-5-4-3 MLP with squared error on 20 examples: (loss_fn, params, batch)."""
  rng = np.random.default_rng(seed)
  params = {"w1": rng.normal(size=(6, 5)), "b1": rng.normal(size=5) * 0.1,
            "w2": rng.normal(size=(5, 4)) / 2, "b2": np.zeros(4),
            "w3": rng.normal(size=(4, 3)) / 2, "b3": np.zeros(3)}
  params = jax.tree.map(jnp.asarray, params)
  batch = {"x": jnp.asarray(rng.normal(size=(20, 6))), "y": jnp.asarray(rng.integers(0, 3, 20))}

  def loss_fn(params, batch):
    h = activation(batch["x"] @ params["w1"] + params["b1"])
    h = activation(h @ params["w2"] + params["b2"])
    return losses.squared_error(h @ params["w3"] + params["b3"], batch["y"])
  return loss_fn, params, batch






@functools.partial(jax.jit, static_argnames=("k", "max_steps", "tol"))
def _jitted_lanczos(a, v0, key, *, k, max_steps, tol):
  """Compiled once per (k, max_steps, tol, shape): the matrix is an argument, so the spectra of
  one parametrisation share one program."""
  return lanczos.lanczos(lambda v: a @ v, v0, key, k=k, max_steps=max_steps, tol=tol)


def run_lanczos(matrix, k, max_steps, tol=1e-10, v0=None, seed=0):
  a = jnp.asarray(matrix)
  v0 = jnp.zeros(a.shape[0]) if v0 is None else jnp.asarray(v0)
  return _jitted_lanczos(a, v0, jax.random.PRNGKey(seed), k=k, max_steps=max_steps, tol=tol)


@pytest.mark.slow
def test_exact_hvp_equals_dense_hessian_times_v():
  loss_fn, params, batch = tiny_mlp_problem()
  h = dense_hessian(loss_fn, params, batch)
  flat, unravel = ravel_pytree(params)
  v = np.random.default_rng(1).normal(size=flat.size)
  hv = ravel_pytree(hvp.exact_hvp(loss_fn, params, batch, unravel(jnp.asarray(v))))[0]
  np.testing.assert_allclose(hv, h @ v, rtol=0, atol=1e-10 * np.abs(h @ v).max())


def test_finite_difference_hvp_approximates_exact_on_a_smooth_loss():
  loss_fn, params, batch = tiny_mlp_problem()
  flat, unravel = ravel_pytree(params)
  v = unravel(jnp.asarray(np.random.default_rng(2).normal(size=flat.size)))
  exact = ravel_pytree(hvp.exact_hvp(loss_fn, params, batch, v))[0]
  fd = ravel_pytree(hvp.finite_difference_hvp(loss_fn, params, batch, v))[0]
  error = np.linalg.norm(fd - exact) / np.linalg.norm(exact)
  assert 1e-12 < error < 1e-4     # close, but an approximation (O(h²) truncation)


def spectra():
  rng = np.random.default_rng(3)
  bulk = rng.uniform(-1, 1, 97)
  return {
      "indefinite": np.concatenate([[4.0, 3.0, 2.5], bulk]),
      "top_two_1e-3_apart": np.concatenate([[5.0, 4.999, 3.0], bulk]),
      "negative_larger_in_magnitude": np.concatenate([[2.0, 1.5, 1.2, -9.0], bulk[1:]]),
  }


@pytest.mark.parametrize("name", list(spectra()))
@pytest.mark.parametrize("k", [1, 3, 10])
def test_lanczos_matches_eigh(name, k):
  spectrum = spectra()[name]
  matrix = symmetric_with_spectrum(spectrum)
  result = run_lanczos(matrix, k, max_steps=100)
  expected = np.linalg.eigh(matrix)[0][::-1][:k]
  np.testing.assert_allclose(result.eigenvalues, expected, rtol=0, atol=1e-8)
  assert result.eigenvalues[0] > 0              # a larger negative eigenvalue is never "top"
  # Residuals: what is reported is ||A y − θ y|| computed directly, and within the tolerance.
  y = np.asarray(result.vectors)
  direct = np.linalg.norm(y @ matrix - np.asarray(result.eigenvalues)[:, None] * y, axis=1)
  np.testing.assert_allclose(result.residuals, direct, rtol=1e-3, atol=1e-12)
  assert np.all(direct <= 1e-10 * np.abs(expected).max() * 1.01)
  np.testing.assert_allclose(np.linalg.norm(y, axis=1), 1.0, rtol=1e-10)
  assert int(result.num_matvecs) < 100          # stopped early on the tolerance


def test_lanczos_reports_honest_residuals_when_capped():
  matrix = symmetric_with_spectrum(spectra()["indefinite"])
  result = run_lanczos(matrix, 3, max_steps=6, tol=1e-12)
  assert int(result.num_matvecs) == 6
  y = np.asarray(result.vectors)
  direct = np.linalg.norm(y @ matrix - np.asarray(result.eigenvalues)[:, None] * y, axis=1)
  np.testing.assert_allclose(result.residuals, direct, rtol=1e-6)
  assert np.all(direct > 1e-8)                  # not converged, and it says so


def test_lanczos_warm_start_from_a_non_top_eigenvector_still_finds_the_top():
  spectrum = spectra()["top_two_1e-3_apart"]
  matrix = symmetric_with_spectrum(spectrum)
  second = np.linalg.eigh(matrix)[1][:, -2]
  result = run_lanczos(matrix, 1, max_steps=100, v0=second)
  assert float(result.eigenvalues[0]) == pytest.approx(5.0, abs=1e-8)


def test_lanczos_warm_start_near_the_top_converges_quickly():
  matrix = symmetric_with_spectrum(spectra()["indefinite"])
  cold = run_lanczos(matrix, 1, max_steps=100, tol=1e-6)
  warm = run_lanczos(matrix, 1, max_steps=100, tol=1e-6, v0=np.asarray(cold.vectors[0]) + 1e-4)
  assert float(warm.eigenvalues[0]) == pytest.approx(4.0, abs=1e-8)
  assert int(warm.num_matvecs) < int(cold.num_matvecs)


def test_lanczos_on_a_low_rank_operator():
  matrix = symmetric_with_spectrum(np.concatenate([[2.0, 1.0], np.zeros(48)]))
  result = run_lanczos(matrix, 3, max_steps=20)
  np.testing.assert_allclose(result.eigenvalues, [2.0, 1.0, 0.0], atol=1e-10)
  assert int(result.num_matvecs) <= 4


def test_lanczos_rejects_k_above_the_cap():
  with pytest.raises(ValueError, match="k"):
    run_lanczos(np.eye(5), 6, max_steps=20)


def test_top_three_of_a_tiny_mlp_loss_match_the_dense_hessian():
  loss_fn, params, batch = tiny_mlp_problem(activation=jax.nn.relu)
  expected = np.linalg.eigh(dense_hessian(loss_fn, params, batch))[0][::-1][:3]
  zeros = jax.tree.map(jnp.zeros_like, params)
  solver = eigensolvers.Solver(k=3, max_steps=60, tol=1e-9)
  result, v1 = jax.jit(lambda p, b, v, key: eigensolvers.top_eigenpairs(
      loss_fn, p, b, v, key, solver))(params, batch, zeros, jax.random.PRNGKey(0))
  np.testing.assert_allclose(result.eigenvalues, expected, rtol=1e-8)
  assert jax.tree.structure(v1) == jax.tree.structure(params)
  hv = hvp.exact_hvp(loss_fn, params, batch, v1)
  np.testing.assert_allclose(ravel_pytree(hv)[0], expected[0] * ravel_pytree(v1)[0], atol=1e-7)


def test_power_and_subspace_iteration_return_magnitudes_like_the_reference():
  matrix = symmetric_with_spectrum(spectra()["negative_larger_in_magnitude"])
  a = jnp.asarray(matrix)
  key = jax.random.PRNGKey(0)
  single = power.power_iteration(lambda v: a @ v, jnp.zeros(100), key)
  assert float(single.eigenvalues[0]) == pytest.approx(9.0, rel=1e-2)
  sub = power.subspace_iteration(lambda v: a @ v, jnp.zeros(100), key, k=3)
  np.testing.assert_allclose(sub.eigenvalues, [9.0, 2.0, 1.5], rtol=5e-2)
  assert int(sub.num_matvecs) % 3 == 0 and 3 <= int(sub.num_matvecs) <= 300


def test_unknown_solver_is_rejected():
  loss_fn, params, batch = tiny_mlp_problem()
  with pytest.raises(ValueError, match="eigensolver"):
    eigensolvers.top_eigenpairs(loss_fn, params, batch, params, jax.random.PRNGKey(0),
                                eigensolvers.Solver(method="qr"))
