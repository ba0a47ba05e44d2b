"""The linearised model: equal to the network at w0, affine in w, Gauss–Newton Hessian."""

import jax
import jax.numpy as jnp
import numpy as np
from jax.flatten_util import ravel_pytree

from sam_edge.models import linearize

B, D, H, C = 5, 3, 4, 2          # examples, inputs, hidden units, outputs




def mlp(params, x):
  """A tiny two-layer tanh MLP: [B, D] -> [B, C]."""
  return jnp.tanh(x @ params["W1"] + params["b1"]) @ params["W2"] + params["b2"]


def setup():
  k = jax.random.split(jax.random.PRNGKey(0), 6)
  params0 = {"W1": jax.random.normal(k[0], (D, H)), "b1": 0.1 * jax.random.normal(k[1], (H,)),
             "W2": jax.random.normal(k[2], (H, C)), "b2": 0.1 * jax.random.normal(k[3], (C,))}
  x = jax.random.normal(k[4], (B, D))
  y = jax.random.normal(k[5], (B, C))
  return params0, x, y


def squared_error(outputs, y):
  """(1/(B·C)) Σ (f − y)²: the mean over all entries."""
  return jnp.mean((outputs - y) ** 2)


def test_equals_the_network_at_w0_and_its_taylor_model_nearby(x64):
  params0, x, _ = setup()
  f_lin = linearize.linearize(mlp, params0)
  np.testing.assert_allclose(f_lin(params0, x), mlp(params0, x), rtol=1e-15, atol=1e-15)
  flat0, unravel = ravel_pytree(params0)
  jac = jax.jacfwd(lambda w: mlp(unravel(w), x).ravel())(flat0)          # [B·C, n]
  delta = 0.3 * jax.random.normal(jax.random.PRNGKey(7), flat0.shape)
  expected = mlp(params0, x).ravel() + jac @ delta
  jitted = jax.jit(linearize.linearized_apply, static_argnums=0)    # w0 an argument, not a constant
  got = jitted(mlp, params0, unravel(flat0 + delta), x)
  np.testing.assert_allclose(got.ravel(), expected, rtol=1e-12, atol=1e-12)
  assert not np.allclose(mlp(unravel(flat0 + delta), x), got, atol=1e-3)   # the network is not


def test_is_affine_in_the_parameters(x64):
  params0, x, _ = setup()
  f_lin = linearize.linearize(mlp, params0)
  flat0, unravel = ravel_pytree(params0)
  d1, d2 = jax.random.normal(jax.random.PRNGKey(1), (2,) + flat0.shape)
  at = lambda d: f_lin(unravel(flat0 + d), x)
  a, b = 1.7, -0.6
  np.testing.assert_allclose(at(a * d1 + b * d2) - at(0 * d1),
                             a * (at(d1) - at(0 * d1)) + b * (at(d2) - at(0 * d1)),
                             rtol=1e-11, atol=1e-11)


def test_squared_error_hessian_is_the_gauss_newton_matrix(x64):
  """∇²_w (1/(B·C)) Σ (f_lin(w, x) − y)² = (2/(B·C)) Jᵀ J with J = ∂f(w0, x)/∂w, densely, at w0
  and away from it; the network's own Hessian at w0 differs (its residual term)."""
  params0, x, y = setup()
  flat0, unravel = ravel_pytree(params0)
  jac = np.asarray(jax.jacfwd(lambda w: mlp(unravel(w), x).ravel())(flat0))   # [B·C, n]
  gauss_newton = 2.0 / (B * C) * jac.T @ jac
  lin_loss = lambda w: squared_error(linearize.linearized_apply(mlp, params0, unravel(w), x), y)
  for w in (flat0, flat0 + 0.5 * jax.random.normal(jax.random.PRNGKey(2), flat0.shape)):
    np.testing.assert_allclose(jax.hessian(lin_loss)(w), gauss_newton, rtol=1e-10, atol=1e-12)
  network = np.asarray(jax.hessian(lambda w: squared_error(mlp(unravel(w), x), y))(flat0))
  assert np.abs(network - gauss_newton).max() > 1e-2 * np.abs(gauss_newton).max()
