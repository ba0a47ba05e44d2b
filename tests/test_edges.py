"""2/η and the SAM-edge: values, both limits, no cancellation."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from sam_edge import edges


def naive_sam_edge(g, eta, rho):
  return (g / (2 * rho)) * (np.sqrt(1 + 8 * rho / (eta * g)) - 1)


@pytest.mark.parametrize("g, eta, rho", [(1.0, 0.1, 0.1), (0.3, 0.01, 0.05), (20.0, 0.5, 2.0)])
def test_matches_the_paper_formula_where_it_is_well_conditioned(g, eta, rho):
  with jax.enable_x64(True):
    value = float(edges.sam_edge(jnp.float64(g), eta, rho))
  np.testing.assert_allclose(value, naive_sam_edge(g, eta, rho), rtol=1e-12)


def test_rho_zero_is_two_over_eta_even_at_zero_gradient():
  assert float(edges.sam_edge(jnp.float32(1.3), 0.01, 0.0)) == pytest.approx(200.0, rel=1e-7)
  assert float(edges.sam_edge(jnp.float32(0.0), 0.01, 0.0)) == pytest.approx(200.0, rel=1e-7)
  assert float(edges.two_over_eta(0.01)) == pytest.approx(200.0)


def test_tiny_rho_gives_two_over_eta_without_cancellation():
  with jax.enable_x64(True):
    value = float(edges.sam_edge(jnp.float64(0.7), 0.01, 1e-12))
  assert abs(value - 200.0) / 200.0 < 1e-9
  # The paper's form cancels here and misses the 1e-9 requirement by orders of magnitude.
  assert abs(naive_sam_edge(0.7, 0.01, 1e-12) - 200.0) / 200.0 > 1e-8


def test_large_rho_stays_finite_positive_and_follows_its_asymptote():
  with jax.enable_x64(True):
    for rho in (1e3, 1e8, 1e30, 1e300):
      value = float(edges.sam_edge(jnp.float64(0.5), 0.1, rho))
      assert np.isfinite(value) and value > 0
      if rho >= 1e8:
        np.testing.assert_allclose(value, np.sqrt(2 * 0.5 / (0.1 * rho)), rtol=1e-3)
  assert float(edges.sam_edge(jnp.float32(0.5), 0.1, 1e30)) > 0


def test_decreases_in_rho_and_zero_gradient_is_zero_for_positive_rho():
  values = [float(edges.sam_edge(jnp.float32(1.0), 0.05, r)) for r in (0.0, 0.01, 0.1, 1.0)]
  assert all(a > b for a, b in zip(values, values[1:]))
  assert float(edges.sam_edge(jnp.float32(0.0), 0.05, 0.1)) == 0.0


def test_jits_and_vectorises():
  g = jnp.array([0.1, 1.0, 10.0])
  out = jax.jit(edges.sam_edge)(g, 0.1, 0.1)
  assert out.shape == (3,) and bool(jnp.all(jnp.isfinite(out)))
