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

from sam_edge import losses, measure, optimizers, steps
from sam_edge.models import vision


def read_idx(path, offset: int) -> np.ndarray:
  with gzip.open(path) as f:
    return np.frombuffer(f.read(), np.uint8, offset=offset)


def test_gd_self_stabilises_at_two_over_eta(shared_data):
  n = 1000
  images = read_idx(shared_data / "mnist" / "train-images-idx3-ubyte.gz", 16)
  x = images.reshape(-1, 784)[:n].astype(np.float32) / 256
  labels = read_idx(shared_data / "mnist" / "train-labels-idx1-ubyte.gz", 8)[:n]
  batch = {"x": jnp.asarray(x - x.mean(0)), "y": jnp.asarray(labels.astype(np.int32))}
  model = vision.MLP(depth=3, width=32)
  params = model.init(jax.random.PRNGKey(0), batch["x"][:1])

  def train_loss(p, model_state, b, constants=None):
    return losses.squared_error(model.apply(p, b["x"]), b["y"]), model_state

  def sharpness(p, eta: float) -> float:
    settings = measure.MeasureSettings(optimizer=optimizers.OptimizerSettings(step_size=eta),
                                       max_steps=40)
    run = measure.make_measure(train_loss, lambda *a: train_loss(*a)[0], settings)
    record, _ = run(p, measure.Context({}, (), jnp.int32(0), {}), batch,
                    measure.init_state(settings, p), jax.random.PRNGKey(1))
    assert bool(record["converged"])
    return float(record["eigenvalues"][0])

  eta = 2 * 1.5 / sharpness(params, 1.0)             # 2/η = λ1(w0) / 1.5
  start = sharpness(params, eta) / (2 / eta)
  assert start >= 1.3
  optimizer = optimizers.OptimizerSettings(step_size=eta).make()
  state = steps.init_state(params, optimizer)
  update = steps.make_update_step(train_loss, optimizer, steps.SamSettings())
  first_loss = None
  for _ in range(300):
    state, loss = update(state, batch)
    first_loss = float(loss) if first_loss is None else first_loss
  assert float(loss) < 0.2 * first_loss
  end = sharpness(state.params, eta) / (2 / eta)
  assert abs(end - 1) <= 0.15, (start, end)
