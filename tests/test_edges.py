"""2/η and the SAM-edge (values, both limits, no cancellation), and every method's edge on
quadratics: converge at 0.97 × edge, diverge at 1.03 × edge."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
import scipy.optimize

from sam_edge.curvature import hvp
from sam_edge.optim import edges, optimizers, schedules, thresholds, update
from sam_edge.optim.optimizers import OPTIMIZERS, OptimizerSettings
from sam_edge.optim.sam import SamSettings
from tests.helpers import make_optimizer


def settings(optimizer, kind, rho, step_size=0.1, weight_decay=0.0, group_size=None, **hyper):
  """The run's settings of a method; hyperparameters the optimizer lacks are dropped."""
  own = {o.name for o in OPTIMIZERS[optimizer].options} if optimizer in OPTIMIZERS else set()
  return (OptimizerSettings(optimizer, step_size,
                            hyper={k: v for k, v in hyper.items() if k in own},
                            weight_decay=weight_decay), SamSettings(rho, kind, group_size))


def edge_of(optimizer, kind, rho, eta, *, grad_norm=None, batch_size=None, **rest):
  """`edges.method_edge` of the method (`settings`)."""
  o, s = settings(optimizer, kind, rho, **rest)
  return edges.method_edge(o, s, eta, grad_norm=grad_norm, batch_size=batch_size)


def label_of(optimizer, kind, rho, *, batch_size=None, **rest):
  """`edges.edge_label` of the method (`settings`)."""
  o, s = settings(optimizer, kind, rho, **rest)
  return edges.edge_label(o, s, batch_size)


def naive_sam_edge(g, eta, rho):
  return (g / (2 * rho)) * (np.sqrt(1 + 8 * rho / (eta * g)) - 1)


@pytest.mark.parametrize("g, eta, rho", [(1.0, 0.1, 0.1), (0.3, 0.01, 0.05), (20.0, 0.5, 2.0)])
def test_matches_the_paper_formula_where_it_is_well_conditioned(g, eta, rho):
  with jax.enable_x64(True):
    value = float(thresholds.sam_edge(jnp.float64(g), eta, rho))
  np.testing.assert_allclose(value, naive_sam_edge(g, eta, rho), rtol=1e-12)


def test_rho_zero_is_two_over_eta_even_at_zero_gradient():
  assert float(thresholds.sam_edge(jnp.float32(1.3), 0.01, 0.0)) == pytest.approx(200.0, rel=1e-7)
  assert float(thresholds.sam_edge(jnp.float32(0.0), 0.01, 0.0)) == pytest.approx(200.0, rel=1e-7)
  assert float(thresholds.two_over_eta(0.01)) == pytest.approx(200.0)


def test_tiny_rho_gives_two_over_eta_without_cancellation():
  with jax.enable_x64(True):
    value = float(thresholds.sam_edge(jnp.float64(0.7), 0.01, 1e-12))
  assert abs(value - 200.0) / 200.0 < 1e-9
  # The paper's form cancels here and misses the 1e-9 requirement by orders of magnitude.
  assert abs(naive_sam_edge(0.7, 0.01, 1e-12) - 200.0) / 200.0 > 1e-8


def test_large_rho_stays_finite_positive_and_follows_its_asymptote():
  with jax.enable_x64(True):
    for rho in (1e3, 1e8, 1e30, 1e300):
      value = float(thresholds.sam_edge(jnp.float64(0.5), 0.1, rho))
      assert np.isfinite(value) and value > 0
      if rho >= 1e8:
        np.testing.assert_allclose(value, np.sqrt(2 * 0.5 / (0.1 * rho)), rtol=1e-3)
  assert float(thresholds.sam_edge(jnp.float32(0.5), 0.1, 1e30)) > 0


def test_decreases_in_rho_and_zero_gradient_is_zero_for_positive_rho():
  values = [float(thresholds.sam_edge(jnp.float32(1.0), 0.05, r)) for r in (0.0, 0.01, 0.1, 1.0)]
  assert all(a > b for a, b in zip(values, values[1:]))
  assert float(thresholds.sam_edge(jnp.float32(0.0), 0.05, 0.1)) == 0.0


def test_jits_and_vectorises():
  g = jnp.array([0.1, 1.0, 10.0])
  out = jax.jit(thresholds.sam_edge)(g, 0.1, 0.1)
  assert out.shape == (3,) and bool(jnp.all(jnp.isfinite(out)))


# ---------------------------------------------------------------------------------------------
# Every method's edge on quadratics, with the real optimizers and our SAM update.
# ---------------------------------------------------------------------------------------------

SPECTRUM = np.array([1.0, 0.6, 0.3, 0.1])               # curvatures / the top one
NUM_STEPS = 3000




def rotation(n, seed=0):
  """A fixed random orthogonal matrix, so that the quadratics are not diagonal."""
  q, _ = np.linalg.qr(np.random.default_rng(seed).normal(size=(n, n)))
  return q


def hessian_with_top(top):
  """H = Q diag(top · SPECTRUM) Qᵀ: top curvature `top`, three smaller ones."""
  q = rotation(len(SPECTRUM))
  return q @ np.diag(top * SPECTRUM) @ q.T


def quadratic(params, h):
  """L(w) = ½ wᵀ H w, H passed as the batch (one compilation serves every curvature)."""
  w = params["w"]
  return 0.5 * w @ h @ w, {}


def growth(optimizer, sam, h, num_steps=NUM_STEPS):
  """||w_T|| / ||w_0|| after T steps of `update.sam_update` with `optimizer` on ½ wᵀ H w."""
  @jax.jit
  def run(h, w0):
    def body(state, _):
      return update.sam_update(quadratic, optimizer, sam, state, h)[0], None
    state, _ = jax.lax.scan(body, update.init_state({"w": w0}, optimizer), None, length=num_steps)
    return jnp.linalg.norm(state.params["w"]) / jnp.linalg.norm(w0)
  w0 = jnp.asarray(np.random.default_rng(1).normal(size=len(SPECTRUM)))
  return float(run(jnp.asarray(h), w0))


def assert_edge(optimizer, sam, edge):
  """0.97 × edge converges (the iterate shrinks by 1e-6), 1.03 × edge diverges (grows by 1e6)."""
  below = growth(optimizer, sam, hessian_with_top(0.97 * edge))
  above = growth(optimizer, sam, hessian_with_top(1.03 * edge))
  assert below < 1e-6, f"0.97 × edge should converge, |w_T|/|w_0| = {below}"
  assert not above < 1e6, f"1.03 × edge should diverge, |w_T|/|w_0| = {above}"


BETAS = (-0.5, 0.0, 0.9)
LINEAR_CASES = (
    [("sgd", 0.0, eta, 0.0, 0.0) for eta in (0.1, 0.01)]
    + [(name, beta, eta, 0.0, 0.0) for name in ("momentum", "nesterov") for beta in BETAS
       for eta in (0.1, 0.01)]
    + [("nesterov", beta, 0.1, 0.0, 0.0) for beta in (-0.9, -0.4, -0.2)]   # both sides of −1/3
    + [("sgd", 0.0, 0.1, rho, 0.0) for rho in (0.05, 1.0)]                  # unnormalised SAM
    + [("sgd", 0.0, 0.01, 0.02, 0.0)]
    + [(name, beta, 0.1, 0.3, 0.0) for name in ("momentum", "nesterov") for beta in BETAS]
    + [("sgd", 0.0, 0.1, 0.0, 2.0), ("momentum", 0.9, 0.1, 0.0, 3.0),      # weight decay
       ("nesterov", -0.5, 0.1, 0.2, 1.0)])


@pytest.mark.parametrize("name, beta, eta, rho, wd", LINEAR_CASES)
def test_linear_methods_converge_below_their_edge_and_diverge_above(x64, name, beta, eta, rho, wd):
  """GD, heavy ball, Nesterov (β ∈ {−0.5, 0, 0.9} and either side of −1/3), unnormalised SAM
  with each, and L2 weight decay: the real optax optimizers behind `update.sam_update`."""
  optimizer = settings(name, "unnormalized", rho, eta, weight_decay=wd, momentum=beta)[0].make()
  sam = SamSettings(rho, "unnormalized")
  edge = float(edge_of(name, "unnormalized", rho, eta, momentum=beta, weight_decay=wd))
  assert_edge(optimizer, sam, edge)


def frozen_adam(eta, b1, precond):
  """Adam with a frozen diagonal preconditioner P, from optax pieces:
  m ← b1 m + (1 − b1) g (optax.ema, no debiasing), u = m / P, w ← w − η u."""
  return optax.chain(optax.ema(b1, debias=False),
                     optax.stateless(lambda m, params: jax.tree.map(jnp.divide, m, precond)),
                     optax.scale(-eta))


@pytest.mark.parametrize("b1", BETAS)
@pytest.mark.parametrize("eta", [0.1, 0.01])
def test_adam_edge_for_the_preconditioned_sharpness(x64, b1, eta):
  """Adam's own preconditioner adapts as it trains, so the edge 2(1+β1)/((1−β1)η) is tested with
  the frozen-preconditioner recurrence (`frozen_adam`, built from optax pieces): the top
  eigenvalue of P^{-1/2} H P^{-1/2}, computed with `hvp.operator` and P, at
  0.97× / 1.03× the edge. H is a full matrix and P a non-uniform diagonal."""
  n = len(SPECTRUM)
  p = jnp.asarray(np.random.default_rng(2).uniform(0.3, 3.0, size=n))
  h0 = jnp.asarray(hessian_with_top(1.0))
  matvec, _, _ = hvp.operator(lambda w, h: 0.5 * w @ h @ w, jnp.zeros(n), h0, precondition=p)
  top = np.linalg.eigvalsh(np.asarray(jax.vmap(matvec)(jnp.eye(n))))[-1]
  edge = float(edge_of("adam", "normalized", 0.0, eta, adam_b1=b1))
  optimizer = frozen_adam(eta, b1, {"w": p})
  sam = SamSettings(0.0)
  below = growth(optimizer, sam, h0 * (0.97 * edge / top))
  above = growth(optimizer, sam, h0 * (1.03 * edge / top))
  assert below < 1e-6 and not above < 1e6, (below, above)
  # plain sharpness is not what the edge bounds: λ1(H) at the boundary differs from the edge
  assert abs(np.linalg.eigvalsh(np.asarray(h0 * edge / top))[-1] / edge - 1) > 0.1


@pytest.mark.parametrize("eta, rho", [(0.1, 0.05), (0.1, 1.0), (0.02, 0.2)])
@pytest.mark.parametrize("wd", [0.0, 2.0])
@pytest.mark.parametrize("factor", [0.97, 1.03])
def test_normalized_sam_edge_decides_the_step_from_the_current_iterate(x64, eta, rho, wd,
                                                                       factor):
  """Normalised SAM is nonlinear: ε = ρ g/(||g|| + 1e-5) depends on ||g||, so there is no fixed
  threshold on a quadratic. In *one* step from w, with g = ||∇L(w)|| = ||H w|| held fixed, the
  update is linear: the eigen-component of curvature a is multiplied by 1 − η a (1 + ρ a/g)
  (1 − η(a + ρa²/g + wd) with weight decay), so the SAM-edge(g) is the curvature at which that
  factor is −1. We pick the top curvature λ1 so that λ1 = factor × SAM-edge(||H(λ1) w||) (a
  one-dimensional root, found with brentq), take one `update.sam_update`, and check that the
  top eigen-component of w shrinks at 0.97 and grows at 1.03."""
  q = rotation(len(SPECTRUM))
  w = np.random.default_rng(3).normal(size=len(SPECTRUM))
  grad_norm = lambda top: np.linalg.norm(hessian_with_top(top) @ w)
  edge = lambda top: float(edge_of("sgd", "normalized", rho, eta,
                                             grad_norm=jnp.float64(grad_norm(top)),
                                             weight_decay=wd))
  top = scipy.optimize.brentq(lambda t: t - factor * edge(t), 1e-6, 10 * (2 / eta))
  assert top == pytest.approx(factor * edge(top), rel=1e-9)
  optimizer = make_optimizer("sgd", eta, weight_decay=wd)
  state = update.init_state({"w": jnp.asarray(w)}, optimizer)
  new, _ = update.sam_update(quadratic, optimizer, SamSettings(rho), state,
                            jnp.asarray(hessian_with_top(top)))
  before, after = q[:, 0] @ w, q[:, 0] @ np.asarray(new.params["w"])
  if factor < 1:
    assert abs(after) < abs(before)
  else:
    assert abs(after) > abs(before)


@pytest.mark.parametrize("beta", [-0.99, -0.9, -0.5, -0.4, -1 / 3, -0.3, 0.0, 0.5, 0.9, 0.99])
@pytest.mark.parametrize("method", ["momentum", "nesterov"])
def test_edges_are_where_the_characteristic_roots_cross_the_unit_circle(beta, method):
  """Roots of x² − (1+β−h)x + β (heavy ball) and x² − (1+β)(1−h)x + β(1−h) (Nesterov): every
  h in (0, edge) is stable (max |root| < 1), and just above the edge it is not."""
  edge_h = float(OPTIMIZERS[method].edge({"momentum": beta}, 1.0))  # η = 1: the edge in h

  def radius(h):
    if method == "momentum":
      coeffs = [1.0, -(1 + beta - h), beta]
    else:
      coeffs = [1.0, -(1 + beta) * (1 - h), beta * (1 - h)]
    return max(abs(np.roots(coeffs)))
  assert all(radius(h) < 1 for h in np.linspace(1e-3, 1 - 1e-4, 200) * edge_h)
  assert radius(edge_h * (1 + 1e-4)) > 1
  assert radius(edge_h) == pytest.approx(1.0, abs=1e-5)


def test_closed_forms():
  beta = lambda b: {"momentum": b}
  assert float(optimizers.heavy_ball_edge(beta(0.9), 0.1)) == pytest.approx(38.0)
  assert float(optimizers.heavy_ball_edge(beta(-0.5), 0.1)) == pytest.approx(10.0)
  assert float(optimizers.nesterov_edge(beta(0.9), 0.1)) == pytest.approx(3.8 / 2.8 * 10, rel=1e-6)
  assert float(optimizers.nesterov_edge(beta(-0.5), 0.1)) == pytest.approx(30.0)   # 1 + 1/|β| = 3
  assert float(optimizers.nesterov_edge(beta(-1 / 3), 0.1)) == pytest.approx(40.0, rel=1e-6)
  assert float(optimizers.nesterov_edge(beta(0.0), 0.1)) == pytest.approx(20.0)
  assert float(optimizers.adam_edge({"adam_b1": 0.9}, 0.1)) == pytest.approx(380.0, rel=1e-6)
  with jax.enable_x64(True):
    for eta, rho in [(0.1, 0.05), (0.01, 3.0), (1.0, 1e-14)]:
      lam = float(edge_of("sgd", "unnormalized", rho, eta))
      assert eta * lam * (1 + rho * lam) == pytest.approx(2.0, rel=1e-12)
    assert float(edge_of("sgd", "unnormalized", 0.0, 0.01)) == 200.0
    # λ(1 + rλ) = E for normalized SAM at r = ρ/g is today's SAM-edge
    assert float(thresholds.sam_curvature_edge(2 / 0.1, 0.3 / 1.7)) == pytest.approx(
        float(thresholds.sam_edge(jnp.float64(1.7), 0.1, 0.3)), rel=1e-13)


NO_CLOSED_FORM = [("momentum", "normalized", 0.1, {}), ("nesterov", "normalized", 0.1, {}),
                  ("adam", "normalized", 0.1, {}), ("adam", "unnormalized", 0.1, {}),
                  ("sgd", "adaptive", 0.1, {}), ("momentum", "adaptive", 0.1, {}),
                  ("sgd", "normalized", 0.1, {"group_size": 4, "batch_size": 16}),
                  ("sgd", "unnormalized", 0.1, {"group_size": 4}),
                  ("adam", "normalized", 0.0, {"weight_decay": 0.1})]


@pytest.mark.parametrize("optimizer, kind, rho, kwargs", NO_CLOSED_FORM)
def test_no_closed_form_is_none(optimizer, kind, rho, kwargs):
  assert edge_of(optimizer, kind, rho, 0.1, grad_norm=jnp.float32(1.0), **kwargs) is None
  assert label_of(optimizer, kind, rho, **kwargs) is None


def test_dispatch_labels_and_plain_cases():
  g = jnp.float32(0.7)
  assert float(edge_of("sgd", "normalized", 0.2, 0.1, grad_norm=g)) == float(
      thresholds.sam_edge(g, 0.1, 0.2))
  # ρ = 0 is the base method whatever the SAM kind or group size; m = B is plain SAM
  assert float(edge_of("sgd", "adaptive", 0.0, 0.1, group_size=4)) == pytest.approx(20)
  assert float(edge_of("sgd", "normalized", 0.2, 0.1, grad_norm=g, group_size=16,
                                 batch_size=16)) == float(thresholds.sam_edge(g, 0.1, 0.2))
  with pytest.raises(ValueError):
    edge_of("sgd", "normalized", 0.2, 0.1)               # needs the gradient norm
  with pytest.raises(ValueError):
    edge_of("lion", "normalized", 0.0, 0.1)
  labels = {
      ("sgd", "normalized", 0.0, 0.9): "2/η",
      ("momentum", "normalized", 0.0, 0.9): "(2+2β)/η, β=0.9",
      ("nesterov", "normalized", 0.0, 0.9): "(2+2β)/(η(1+2β)), β=0.9",
      ("nesterov", "normalized", 0.0, -0.5): "(1+1/|β|)/η, β=-0.5",
      ("adam", "normalized", 0.0, 0.9): "2(1+β1)/((1−β1)η), β1=0.9",
      ("sgd", "normalized", 0.1, 0.9): "SAM-edge",
      ("sgd", "unnormalized", 0.1, 0.9): "unnormalized SAM-edge",
      ("momentum", "unnormalized", 0.1, 0.9): "unnormalized SAM-edge of (2+2β)/η, β=0.9",
  }
  for (opt, kind, rho, beta), label in labels.items():
    assert label_of(opt, kind, rho, momentum=beta, adam_b1=beta) == label
  assert label_of("momentum", "normalized", 0.0, momentum=0.5,
                          weight_decay=0.01) == "(2+2β)/η − wd, β=0.5, wd=0.01"


def test_edges_take_a_traced_step_size_from_a_schedule():
  schedule = optax.linear_schedule(0.2, 0.1, 10)

  @jax.jit
  def edge_at(step):
    eta = schedules.step_size_at(schedule, step)
    return (edge_of("nesterov", "unnormalized", 0.1, eta, momentum=0.9),
            edge_of("sgd", "normalized", 0.1, eta, grad_norm=jnp.float32(2.0)))
  unnormalized, sam = edge_at(jnp.int32(5))
  eta = 0.15
  assert float(unnormalized) == pytest.approx(
      float(thresholds.sam_curvature_edge(optimizers.nesterov_edge({"momentum": 0.9}, eta), 0.1)),
      rel=1e-6)
  expected = thresholds.sam_edge(jnp.float32(2.0), eta, 0.1)
  assert float(sam) == pytest.approx(float(expected), rel=1e-6)
