"""Loss landscapes: the grid against a quadratic's formula, filter normalisation, the Hessian
directions against numpy's eigh, the plane through three runs."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.flatten_util import ravel_pytree

from sam_edge.landscapes import directions, figures, grid


def _quadratic(n: int, seed: int):
  """A pytree θ (a vector and a matrix), a symmetric A and g, and L(p) = ½xᵀAx + gᵀx with
  x = ravel(p) (the data argument carries A and g, as a run's data would)."""
  rng = np.random.default_rng(seed)
  params = {"b": jnp.asarray(rng.normal(size=2), jnp.float32),
            "w": jnp.asarray(rng.normal(size=(3, n)), jnp.float32)}
  size = 2 + 3 * n
  m = rng.normal(size=(size, size))
  a = (m + m.T) / 2
  g = rng.normal(size=size)
  data = {"a": jnp.asarray(a, jnp.float32), "g": jnp.asarray(g, jnp.float32)}

  def loss(p, d):
    x = ravel_pytree(p)[0]
    return 0.5 * x @ d["a"] @ x + d["g"] @ x
  return params, data, loss, a, g


@pytest.mark.parametrize("chunk", [1, 7, 1000])
def test_quadratic_landscape_equals_its_formula(chunk):
  params, data, loss, a, g = _quadratic(4, seed=0)
  rng = np.random.default_rng(1)
  _, unravel = ravel_pytree(params)
  u, v = rng.normal(size=(2, a.shape[0]))
  vectors = (unravel(jnp.asarray(u, jnp.float32)), unravel(jnp.asarray(v, jnp.float32)))
  xs, ys = grid.axis(-1.0, 1.0, 9), grid.axis(-0.5, 2.0, 6)
  values = grid.evaluate(loss, params, data, vectors, [xs, ys], chunk)
  assert values.shape == (6, 9)
  theta = np.asarray(ravel_pytree(params)[0], np.float64)
  for j, b in enumerate(ys):
    for i, alpha in enumerate(xs):
      x = theta + alpha * u + b * v
      np.testing.assert_allclose(values[j, i], 0.5 * x @ a @ x + g @ x, rtol=1e-4, atol=1e-4)
  line = grid.evaluate(loss, params, data, vectors[:1], [xs], chunk)
  assert ys[1] == 0.0
  np.testing.assert_allclose(line, values[1], rtol=1e-5, atol=1e-5)


def test_odd_symmetric_axis_holds_zero():
  for n in (3, 25, 51):
    assert grid.axis(-1.0, 1.0, n)[n // 2] == 0.0


def test_filter_normalisation_gives_each_filter_thetas_norm():
  rng = np.random.default_rng(0)
  params = {"dense": {"kernel": jnp.asarray(rng.normal(size=(5, 4)), jnp.float32),
                      "bias": jnp.asarray(rng.normal(size=4), jnp.float32)},
            "conv": {"kernel": jnp.asarray(rng.normal(size=(3, 3, 2, 6)), jnp.float32)},
            "norm": {"scale": jnp.ones(6, jnp.float32), "bias": jnp.zeros(6, jnp.float32)}}
  d = directions.filter_normalized(jax.random.PRNGKey(3), params)
  for path in (("dense", "kernel"), ("conv", "kernel")):
    w, dw = params[path[0]][path[1]], d[path[0]][path[1]]
    filters = lambda x: np.asarray(x).reshape(-1, x.shape[-1])       # column j: filter j
    np.testing.assert_allclose(np.linalg.norm(filters(dw), axis=0),
                               np.linalg.norm(filters(w), axis=0), rtol=1e-5)
    assert not np.allclose(np.asarray(dw), np.asarray(w))         # a random direction, not θ
  for leaf in (d["dense"]["bias"], d["norm"]["scale"], d["norm"]["bias"]):
    assert np.all(np.asarray(leaf) == 0)
  again = directions.filter_normalized(jax.random.PRNGKey(3), params)
  other = directions.filter_normalized(jax.random.PRNGKey(4), params)
  assert np.array_equal(ravel_pytree(again)[0], ravel_pytree(d)[0])
  assert not np.allclose(ravel_pytree(other)[0], ravel_pytree(d)[0])


def _check_top_two(plane, hessian):
  eig, vec = np.linalg.eigh(hessian)
  for i, vector in enumerate(plane.vectors):
    expected = vec[:, -1 - i]
    got = np.asarray(ravel_pytree(vector)[0], np.float64)
    np.testing.assert_allclose(np.linalg.norm(got), 1.0, rtol=1e-4)
    assert abs(got @ expected) > 1 - 1e-4
    np.testing.assert_allclose(plane.values[f"lambda{i + 1}"], eig[-1 - i], rtol=1e-4)


def test_hessian_directions_of_a_quadratic_are_its_top_eigenvectors():
  params, data, loss, a, _ = _quadratic(5, seed=2)
  plane = directions.hessian_plane(loss, params, data, jax.random.PRNGKey(0), 2,
                                   max_steps=40, tol=1e-6)
  _check_top_two(plane, a)


def test_hessian_directions_of_a_small_mlp_match_eigh():
  rng = np.random.default_rng(0)
  params = {"w1": jnp.asarray(rng.normal(size=(3, 4)) / 2, jnp.float32),
            "b1": jnp.zeros(4, jnp.float32),
            "w2": jnp.asarray(rng.normal(size=(4, 2)) / 2, jnp.float32)}
  data = {"x": jnp.asarray(rng.normal(size=(16, 3)), jnp.float32),
          "y": jnp.asarray(rng.normal(size=(16, 2)), jnp.float32)}

  def loss(p, d):
    return 0.5 * jnp.mean(jnp.sum((jnp.tanh(d["x"] @ p["w1"] + p["b1"]) @ p["w2"] - d["y"]) ** 2,
                                  axis=-1))
  flat, unravel = ravel_pytree(params)
  hessian = np.asarray(jax.hessian(lambda x: loss(unravel(x), data))(flat), np.float64)
  plane = directions.hessian_plane(loss, params, data, jax.random.PRNGKey(1), 2,
                                   max_steps=flat.size, tol=1e-6)
  _check_top_two(plane, (hessian + hessian.T) / 2)


def test_runs_plane_places_the_three_runs():
  theta = {"w": jnp.asarray([0.0, 0.0, 1.0])}
  a = {"w": jnp.asarray([2.0, 0.0, 1.0])}
  b = {"w": jnp.asarray([1.0, 3.0, 1.0])}
  plane = directions.runs_plane(theta, [a, b], ["A", "B"])
  assert plane.points == {"θ": (0.0, 0.0), "A": (1.0, 0.0), "B": (0.5, 1.0)}
  for name, (x, y) in plane.points.items():
    point = grid.shifted(theta, plane.vectors, jnp.asarray([x, y]))
    target = {"θ": theta, "A": a, "B": b}[name]
    np.testing.assert_allclose(point["w"], target["w"], atol=1e-6)
  assert abs(float(jnp.vdot(plane.vectors[0]["w"], plane.vectors[1]["w"]))) < 1e-6
  with pytest.raises(ValueError, match="one line"):
    directions.runs_plane(theta, [a, {"w": jnp.asarray([4.0, 0.0, 1.0])}], ["A", "B"])
  line = directions.runs_plane(theta, [a], ["A"])
  assert line.points == {"θ": (0.0,), "A": (1.0,)} and len(line.vectors) == 1


@pytest.mark.parametrize("dims", [1, 2])
def test_outputs_hold_the_grid_and_draw_it(tmp_path, dims):
  params, data, loss, a, g = _quadratic(3, seed=4)
  plane = directions.random_plane(jax.random.PRNGKey(0), params, dims)
  axes = [grid.axis(-1.0, 1.0, 5) for _ in range(dims)]
  values = grid.evaluate(lambda p, d: loss(p, d) + 100.0, params, data, plane.vectors, axes, 4)
  figures.write_npz(str(tmp_path / figures.NPZ), values, axes, plane, "random", 12, "run")
  figures.write_pdf(str(tmp_path / figures.PDF), values, axes, plane, "random", "quadratic")
  assert (tmp_path / figures.PDF).read_bytes().startswith(b"%PDF")
  with np.load(tmp_path / figures.NPZ) as z:
    np.testing.assert_array_equal(z["loss"], values)
    np.testing.assert_array_equal(z["x"], axes[0])
    assert ("y" in z.files) == (dims == 2)
    assert str(z["directions"]) == "random" and int(z["examples"]) == 12
    assert list(z["point_names"]) == ["θ"]
    np.testing.assert_array_equal(z["point_coords"], [(0.0,) * dims])
    centre = z["loss"][(2,) * dims]
  np.testing.assert_allclose(centre, float(loss(params, data)) + 100.0, rtol=1e-6)
