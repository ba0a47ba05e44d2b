"""The network of the power-law study and its empirical neural tangent kernel.

A fully connected ReLU network with one scalar output in the NTK parameterisation (the paper's
`NTKLinear`): layer l maps its input a_l (width n_l) to the pre-activation

    z_l = a_l W_l / √n_l + b_l,        W_l, b_l ~ N(0, 1) at initialisation,

the hidden layers apply ReLU, and the output layer has no bias. The study's network has one hidden
layer: f(x) = Σ_j v_j ReLU(x·w_j/√D + b_j) / √H.

The kernel K(x_i, x_k) = ∇_w f(x_i) · ∇_w f(x_k) (K = J Jᵀ) is built layer by layer without
forming J. With δ_l(x) = ∂f/∂z_l the gradient with respect to W_l is the outer product
(a_l/√n_l) ⊗ δ_l and with respect to b_l it is δ_l, so

    K = Σ_l (A_l A_lᵀ / n_l + [l has a bias]) ⊙ (Δ_l Δ_lᵀ),

where the rows of A_l and Δ_l are a_l(x_i) and δ_l(x_i). The δ_l come from autodiff: the
gradient of f with respect to zero "taps" added to each pre-activation, one example at a time.
"""

from typing import Any, Optional

import jax
import jax.numpy as jnp

Params = list[dict[str, jax.Array]]     # per layer: "w" [n_in, n_out] and, hidden layers, "b"


def init(key: jax.Array, input_dim: int, hidden_width: int) -> Params:
  """A one-hidden-layer network's parameters, every entry N(0, 1)."""
  k_w, k_b, k_v = jax.random.split(key, 3)
  return [{"w": jax.random.normal(k_w, (input_dim, hidden_width)),
           "b": jax.random.normal(k_b, (hidden_width,))},
          {"w": jax.random.normal(k_v, (hidden_width, 1))}]


def _forward(params: Params, x: jax.Array, taps: Optional[list[jax.Array]] = None
             ) -> tuple[jax.Array, list[jax.Array]]:
  """(f(x) [batch], the inputs a_l of every layer); `taps` are added to the pre-activations."""
  inputs, h = [], x
  for l, layer in enumerate(params):
    inputs.append(h)
    z = h @ layer["w"] / jnp.sqrt(layer["w"].shape[0]) + layer.get("b", 0.0)
    if taps is not None:
      z = z + taps[l]
    h = jax.nn.relu(z) if l < len(params) - 1 else z
  return h[..., 0], inputs


def apply(params: Params, x: jax.Array) -> jax.Array:
  """The network's outputs f(x) [batch] on the inputs x [batch, D]."""
  return _forward(params, x)[0]


def kernel(params: Params, x: jax.Array) -> jax.Array:
  """The empirical NTK K = J Jᵀ [N, N] on the inputs x [N, D], layer by layer (module doc)."""
  _, inputs = _forward(params, x)

  def deltas(x1: jax.Array) -> Any:
    taps = [jnp.zeros(layer["w"].shape[1], x.dtype) for layer in params]
    return jax.grad(lambda t: _forward(params, x1[None], t)[0][0])(taps)
  per_layer = jax.vmap(deltas)(x)                 # per layer [N, n_out]
  total = jnp.zeros((x.shape[0], x.shape[0]), x.dtype)
  for layer, a, d in zip(params, inputs, per_layer):
    total = total + (a @ a.T / a.shape[1] + (1.0 if "b" in layer else 0.0)) * (d @ d.T)
  return total
