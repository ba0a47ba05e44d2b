"""The phenomenon itself, in miniature: gradient descent started with its sharpness 50% above
2/η drives λ1 down to the edge of stability and holds it there (the short variant of
benchmarks/edge_of_stability.py).

1,000 MNIST images read straight from ../shared's IDX files (no TFDS), the reference's loss, a
3-layer MLP of width 32, full batch, through the library's own update step and measurement. It
cannot pass by accident: λ1 must start ≥ 30% above 2/η (measured, not assumed), training must
reduce the loss, and λ1 must end within 15% of 2/η.
"""

import gzip

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from sam_edge.curvature import measure
from sam_edge.models import losses, vision
from sam_edge.optim import update
from sam_edge.optim.method import Method
from sam_edge.optim.optimizers import OptimizerSettings
from sam_edge.optim.sam import SamSettings


def read_idx(path, offset: int) -> np.ndarray:
  with gzip.open(path) as f:
    return np.frombuffer(f.read(), np.uint8, offset=offset)


@pytest.mark.slow
def test_gd_self_stabilises_at_two_over_eta(shared_data):
  n = 1000
  images = read_idx(shared_data / "mnist" / "train-images-idx3-ubyte.gz", 16)
  x = images.reshape(-1, 784)[:n].astype(np.float32) / 256
  labels = read_idx(shared_data / "mnist" / "train-labels-idx1-ubyte.gz", 8)[:n]
  batch = {"x": jnp.asarray(x - x.mean(0)), "y": jnp.asarray(labels.astype(np.int32))}
  model = vision.MLP(depth=3, width=32)
  params = model.init(jax.random.PRNGKey(0), batch["x"][:1])

  def forward(p, model_state, b, constants=None, dtype=jnp.float32):
    return model.apply(p, b["x"]), model_state

  def output_loss(logits, b):
    return losses.squared_error(logits, b["y"])

  def sharpness(p, eta: float) -> float:
    settings = measure.MeasureSettings(method=Method(OptimizerSettings(step_size=eta)),
                                       max_steps=40)
    run = measure.make_measure(forward, output_loss, settings)
    record, _ = run(p, measure.Context({}, (), jnp.int32(0), {}), batch,
                    measure.init_state(settings, p), jax.random.PRNGKey(1))
    assert bool(record["converged"])
    return float(record["eigenvalues"][0])

  eta = 2 * 1.5 / sharpness(params, 1.0)             # 2/η = λ1(w0) / 1.5
  start = sharpness(params, eta) / (2 / eta)
  assert start >= 1.3
  optimizer = OptimizerSettings(step_size=eta).make()
  state = update.init_state(params, optimizer)
  loss_fn = lambda p, b: (output_loss(forward(p, {}, b)[0], b), {})
  step = jax.jit(lambda state, b: update.sam_update(loss_fn, optimizer, SamSettings(), state, b))
  first_loss = None
  for _ in range(300):
    state, loss = step(state, batch)
    first_loss = float(loss) if first_loss is None else first_loss
  assert float(loss) < 0.2 * first_loss
  end = sharpness(state.params, eta) / (2 / eta)
  assert abs(end - 1) <= 0.15, (start, end)
