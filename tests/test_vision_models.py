"""Tests for sam_edge.models.vision: shapes, parameter counts, layer order.

XLA:CPU compiles threefry random initialisers slowly (~10 s for a 6-conv
CNN's ``init``), so most tests take parameter shapes from ``jax.eval_shape``
and fill them from numpy; only two tests run a real ``init``.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from sam_edge.models import vision

MNIST_SHAPE = (28, 28, 1)
CIFAR_SHAPE = (32, 32, 3)


def param_shapes(model, input_shape: tuple[int, ...]):
  """Parameter shapes of ``model`` for inputs ``[1, *input_shape]``."""
  x = jnp.zeros((1, *input_shape), jnp.float32)
  return jax.eval_shape(model.init, jax.random.key(0), x)["params"]


def count_params(model, input_shape: tuple[int, ...]) -> int:
  """Total number of scalars in ``model``'s parameters."""
  return sum(int(np.prod(p.shape))
             for p in jax.tree.leaves(param_shapes(model, input_shape)))


def numpy_params(model, input_shape: tuple[int, ...], seed: int = 0):
  """Parameters of the right shapes drawn from N(0, 0.3^2) with numpy."""
  rng = np.random.default_rng(seed)
  return jax.tree.map(
      lambda s: jnp.asarray(0.3 * rng.standard_normal(s.shape), s.dtype),
      param_shapes(model, input_shape))


REFERENCE_ACTIVATIONS = {   # written out, independently of the module's table
    "relu": lambda z: jnp.maximum(z, 0), "tanh": jnp.tanh,
    "elu": lambda z: jnp.where(z > 0, z, jnp.expm1(z)),
    "gelu": lambda z: 0.5 * z * (1 + jnp.tanh(jnp.sqrt(2 / jnp.pi) * (z + 0.044715 * z**3))),
    "softplus": lambda z: jnp.log1p(jnp.exp(z))}


def reference_mlp(params, x: jax.Array, activation: str = "relu") -> jax.Array:
  """σ(... σ(flatten(x) W_0 + b_0) ...) W_L + b_L."""
  sigma = REFERENCE_ACTIVATIONS[activation]
  h = x.reshape((x.shape[0], -1))
  layers = [params[f"Dense_{i}"] for i in range(len(params))]
  for layer in layers[:-1]:
    h = sigma(h @ layer["kernel"] + layer["bias"])
  return h @ layers[-1]["kernel"] + layers[-1]["bias"]


def reference_cnn(params, x: jax.Array, num_blocks: int,
                  layers_per_block: int) -> jax.Array:
  """(conv3x3 SAME -> relu -> layer_norm)^L -> maxpool 2x2/2, K times; Dense.

  layer_norm(h) = (h - mean_c h) / sqrt(var_c h + 1e-6) * scale + bias.
  """
  h = x
  for i in range(num_blocks * layers_per_block):
    conv, norm = params[f"Conv_{i}"], params[f"LayerNorm_{i}"]
    h = jax.lax.conv_general_dilated(
        h, conv["kernel"], (1, 1), "SAME",
        dimension_numbers=("NHWC", "HWIO", "NHWC")) + conv["bias"]
    h = jax.nn.relu(h)
    mean = h.mean(-1, keepdims=True)
    var = ((h - mean)**2).mean(-1, keepdims=True)
    h = (h - mean) / jnp.sqrt(var + 1e-6) * norm["scale"] + norm["bias"]
    if (i + 1) % layers_per_block == 0:
      h = jax.lax.reduce_window(h, -jnp.inf, jax.lax.max, (1, 2, 2, 1),
                                (1, 2, 2, 1), "VALID")
  h = h.reshape((h.shape[0], -1))
  return h @ params["Dense_0"]["kernel"] + params["Dense_0"]["bias"]


def test_mlp_mnist_param_count():
  # (784 + 1) * 100 + 2 * (100 + 1) * 100 + (100 + 1) * 10.
  assert count_params(vision.MLP(depth=4, width=100), MNIST_SHAPE) == 99_710


def test_mlp_64_inputs_param_count():
  # (64 + 1) * 32 + 2 * (32 + 1) * 32 + (32 + 1) * 10.
  assert count_params(vision.MLP(depth=4, width=32), (8, 8, 1)) == 4_522
  assert count_params(vision.MLP(depth=4, width=32), (64,)) == 4_522


def test_mlp_layer_shapes():
  params = param_shapes(vision.MLP(depth=4, width=100), MNIST_SHAPE)
  assert list(params) == ["Dense_0", "Dense_1", "Dense_2", "Dense_3"]
  assert [params[k]["kernel"].shape for k in params] == [
      (784, 100), (100, 100), (100, 100), (100, 10)]


def test_mlp_depth_one_is_linear():
  params = param_shapes(vision.MLP(depth=1, width=7, num_classes=3), (4,))
  assert list(params) == ["Dense_0"]
  assert params["Dense_0"]["kernel"].shape == (4, 3)


def test_mlp_rejects_depth_zero():
  with pytest.raises(ValueError, match="depth"):
    param_shapes(vision.MLP(depth=0, width=7), (4,))


def test_mlp_matches_reference():
  model = vision.MLP(depth=3, width=16, num_classes=5)
  params = numpy_params(model, (4, 4, 2))
  x = jax.random.normal(jax.random.key(1), (6, 4, 4, 2))
  logits = jax.jit(model.apply)({"params": params}, x)
  assert logits.shape == (6, 5) and logits.dtype == jnp.float32
  assert (logits < 0).any()  # No ReLU after the last layer.
  np.testing.assert_allclose(logits, reference_mlp(params, x),
                             rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("activation", ["relu", "tanh", "elu", "gelu", "softplus"])
def test_mlp_activation(activation):
  model = vision.MLP(depth=3, width=16, num_classes=5, activation=activation)
  params = numpy_params(model, (4, 4, 2))
  x = jax.random.normal(jax.random.key(1), (6, 4, 4, 2))
  np.testing.assert_allclose(jax.jit(model.apply)({"params": params}, x),
                             reference_mlp(params, x, activation), rtol=1e-5, atol=1e-5)
  if activation != "relu":
    other = reference_mlp(params, x, "relu")
    assert not np.allclose(reference_mlp(params, x, activation), other, atol=1e-3)


def test_cnn_activation_is_used():
  relu = vision.CNN(num_blocks=1, layers_per_block=1, feature_multiplier=4)
  tanh = vision.CNN(num_blocks=1, layers_per_block=1, feature_multiplier=4, activation="tanh")
  params = numpy_params(relu, (8, 8, 1))
  x = jax.random.normal(jax.random.key(2), (2, 8, 8, 1))
  a = relu.apply({"params": params}, x)
  b = tanh.apply({"params": params}, x)
  assert not np.allclose(a, b, atol=1e-3)


def test_mlp_init():
  model = vision.MLP(depth=4, width=100, num_classes=10)
  x = jnp.zeros((1, *MNIST_SHAPE))
  params = jax.jit(model.init)(jax.random.key(0), x)["params"]
  kernel = np.asarray(params["Dense_0"]["kernel"])
  # glorot_normal: Var = 2 / (fan_in + fan_out) = 2 / (784 + 100).
  np.testing.assert_allclose(kernel.std(), np.sqrt(2 / 884), rtol=0.05)
  for layer in params.values():
    np.testing.assert_array_equal(layer["bias"], 0)


def test_cnn_param_count():
  # Block 0 (8 ch): conv 1->8 (80) + LN (16) + conv 8->8 (584) + LN (16);
  # block 1 (16 ch): conv 8->16 (1168) + LN (32) + conv 16->16 (2320) + LN (32);
  # 28 -> 14 -> 7, Dense 7*7*16 -> 10: 7850.
  model = vision.CNN(num_blocks=2, layers_per_block=2, feature_multiplier=8)
  assert count_params(model, MNIST_SHAPE) == 12_098


@pytest.mark.parametrize(
    "input_shape, spatial", [(MNIST_SHAPE, 3), (CIFAR_SHAPE, 4)])
def test_cnn_shapes_and_reference(input_shape, spatial):
  model = vision.CNN(num_blocks=3, layers_per_block=2, feature_multiplier=4,
                     num_classes=10)
  params = numpy_params(model, input_shape)
  # Channels double per block: 4, 4 | 8, 8 | 16, 16; pooled 3 times.
  assert params["Conv_0"]["kernel"].shape == (3, 3, input_shape[-1], 4)
  assert params["Conv_2"]["kernel"].shape == (3, 3, 4, 8)
  assert params["Conv_5"]["kernel"].shape == (3, 3, 16, 16)
  assert params["LayerNorm_5"]["scale"].shape == (16,)
  assert params["Dense_0"]["kernel"].shape == (spatial * spatial * 16, 10)
  x = jax.random.normal(jax.random.key(1), (2, *input_shape))
  logits = jax.jit(model.apply)({"params": params}, x)
  assert logits.shape == (2, 10) and logits.dtype == jnp.float32
  reference = jax.jit(reference_cnn, static_argnums=(2, 3))
  np.testing.assert_allclose(logits, reference(params, x, 3, 2),
                             rtol=1e-4, atol=1e-4)


def test_cnn_init():
  model = vision.CNN(num_blocks=1, layers_per_block=1, feature_multiplier=4)
  x = jnp.zeros((1, *CIFAR_SHAPE))
  params = jax.jit(model.init)(jax.random.key(0), x)["params"]
  assert params["Dense_0"]["kernel"].shape == (16 * 16 * 4, 10)
  np.testing.assert_array_equal(params["LayerNorm_0"]["scale"], 1)
  np.testing.assert_array_equal(params["Conv_0"]["bias"], 0)
