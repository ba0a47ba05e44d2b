"""Metrics between runs: CKA's invariances, the barrier formula, the Bezier bend's fixed ends, the
distance, a convex problem's connected minima, and `compare --global_metrics` on real runs."""

import csv
import pathlib
import pickle
import zipfile

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import image_classification as ic
from sam_edge import compare, errors
from sam_edge.cli import main as cli
from sam_edge.run import params_file
from sam_edge.studies import (
  connectivity,
  global_metrics,
  network_eval,
  sources,
  summary,
  trained,
)
from sam_edge.studies.global_metrics import ensemble_error, linear_cka, mixup
from tests import helpers


@pytest.fixture
def features():
  rng = np.random.default_rng(0)
  return rng.normal(size=(50, 6)), rng.normal(size=(50, 4))


def kernel_cka(x, y):
  """CKA from the n × n kernels: HSIC(K, L) = tr(K H L H)/(n − 1)²."""
  n = len(x)
  h = np.eye(n) - np.ones((n, n)) / n
  hsic = lambda k, l: np.trace(k @ h @ l @ h) / (n - 1) ** 2
  k, l = x @ x.T, y @ y.T
  return hsic(k, l) / np.sqrt(hsic(k, k) * hsic(l, l))


def test_cka_is_one_on_itself_and_invariant(features, x64):
  x, y = features
  assert float(linear_cka(x, x)) == pytest.approx(1.0, abs=1e-12)
  base = float(linear_cka(x, y))
  assert base == pytest.approx(kernel_cka(x, y), rel=1e-10)
  assert 0 < base < 1
  q, _ = np.linalg.qr(np.random.default_rng(1).normal(size=(6, 6)))
  assert float(linear_cka(x @ q, y)) == pytest.approx(base, rel=1e-10)       # orthogonal
  assert float(linear_cka(-3.7 * x, y)) == pytest.approx(base, rel=1e-10)    # isotropic
  assert float(linear_cka(x + np.arange(6.0), y)) == pytest.approx(base, rel=1e-10)  # shift
  assert float(linear_cka(x, y * np.array([1, 5, 1, 1]))) != pytest.approx(base, rel=1e-3)


def test_barrier_formula():
  assert connectivity.barrier([0.3] * 5) == 0.0
  assert connectivity.barrier([0.1, 0.3, 0.6, 0.3, 0.1]) == pytest.approx(-0.5)   # a bump
  assert connectivity.barrier([0.2, 0.1, 0.05, 0.1, 0.2]) == pytest.approx(0.15)  # a dip
  assert connectivity.barrier([0.0, 0.5, 0.3, 0.2, 0.2]) == pytest.approx(-0.4)   # ends differ


def test_schedule_is_the_taxonomys():
  assert connectivity.schedule(0.1, 50, 100) == pytest.approx(0.1)
  assert connectivity.schedule(0.1, 70, 100) == pytest.approx(0.1 * (1 - 0.2 / 0.4 * 0.99))
  assert connectivity.schedule(0.1, 95, 100) == pytest.approx(0.001)


def _least_squares(n=8, d=20, seed=0):
  """An underdetermined linear regression: every w with X w = y is a minimum (loss 0)."""
  rng = np.random.default_rng(seed)
  x = rng.normal(size=(n, d)).astype(np.float32)
  y = rng.normal(size=(n,)).astype(np.float32)
  loss = lambda w, batch: jnp.mean(jnp.square(batch["x"] @ w["w"] - batch["y"]))
  w_min = np.linalg.lstsq(x, y, rcond=None)[0]
  null = np.linalg.svd(x)[2][n:]                                  # rows span the null space
  w0 = {"w": (w_min + 2.0 * null[0]).astype(np.float32)}
  w1 = {"w": (w_min - 1.5 * null[1] + 0.7 * null[2]).astype(np.float32)}
  return {"x": x, "y": y}, loss, w0, w1


def test_bezier_endpoints_never_move():
  arrays, loss, w0, _ = _least_squares()
  w1 = {"w": w0["w"] + 3.0}                                      # a far, bad end: θ must move
  settings = connectivity.CurveSettings(epochs=3, batch_size=4, step_size=0.05)
  theta = connectivity.fit_bend(loss, w0, w1, arrays, settings, jax.random.key(0))
  mid = connectivity.midpoint(w0, w1)
  assert not np.allclose(theta["w"], mid["w"])                   # the bend was trained
  np.testing.assert_array_equal(connectivity.bezier(w0, theta, w1, 0.0)["w"], w0["w"])
  np.testing.assert_array_equal(connectivity.bezier(w0, theta, w1, 1.0)["w"], w1["w"])


def test_two_minima_of_a_convex_problem_are_connected():
  arrays, loss, w0, w1 = _least_squares()
  full = jax.jit(lambda w: loss(w, arrays))
  assert float(full(w0)) < 1e-8 and float(full(w1)) < 1e-8
  settings = connectivity.CurveSettings(epochs=20, batch_size=4, step_size=0.01)
  result = connectivity.connect(loss, lambda w: float(full(w)), w0, w1, arrays, settings,
                                jax.random.key(1))
  assert abs(result["line_barrier"]) < 1e-6
  assert abs(result["mc"]) < 1e-4
  assert max(result["curve"]) < 1e-4


def test_mixup_is_fixed_by_its_key_and_mixes_within_each_batch():
  rng = np.random.default_rng(0)
  images = rng.integers(0, 256, size=(300, 4, 4, 1)).astype(np.uint8)
  key = jax.random.key(3)
  mixed = np.asarray(mixup(images, key, 16.0))
  assert mixed.shape == images.shape and mixed.dtype == np.float32
  np.testing.assert_array_equal(mixed, mixup(images, key, 16.0))        # a key fixes it
  assert not np.allclose(mixed, mixup(images, jax.random.key(4), 16.0))
  assert not np.allclose(mixed, images)
  for start in (0, 128, 256):                     # batches of 128, the last of 44: within each,
    x, y = images[start:start + 128].astype(np.float64), mixed[start:start + 128]   # λ and 1 − λ
    np.testing.assert_allclose(y.sum(0), x.sum(0), rtol=1e-5)    # of a permutation: sums kept
  assert np.all(mixed >= 0) and np.all(mixed <= 255)
  # α = 16: λ near 1/2, so two independent images average (variance about halved); a small α
  # keeps λ near 0 or 1 (images nearly unmixed).
  assert np.var(mixed) < 0.6 * np.var(images.astype(np.float64))
  assert np.var(mixup(images, key, 0.05)) > 0.9 * np.var(images.astype(np.float64))


def test_ensemble_error_averages_the_runs_probabilities():
  labels = np.array([0, 1, 1])
  one = np.array([[0.6, 0.4], [0.3, 0.7], [0.8, 0.2]])           # wrong on the last example
  other = np.array([[0.1, 0.9], [0.4, 0.6], [0.1, 0.9]])         # wrong on the first
  assert float(ensemble_error(np.stack([one, one]), labels)) == pytest.approx(1 / 3)
  mean = (one + other) / 2                                       # [.35 .65], [.35 .65], [.45 .55]
  assert float(ensemble_error(np.stack([one, other]), labels)) == pytest.approx(
      float(np.mean(np.argmax(mean, -1) != labels))) == pytest.approx(1 / 3)
  assert float(ensemble_error(np.stack([other, other, one]), labels)) == pytest.approx(
      1 / 3)


def test_distance_is_symmetric_and_zero_on_itself():
  rng = np.random.default_rng(0)
  a = {"d": {"kernel": rng.normal(size=(3, 2)), "bias": rng.normal(size=2)}}
  b = {"d": {"kernel": rng.normal(size=(3, 2)), "bias": rng.normal(size=2)}}
  assert global_metrics.distance(a, a) == 0.0
  assert global_metrics.distance(a, b) == global_metrics.distance(b, a)
  flat = lambda t: np.concatenate([np.ravel(v) for v in jax.tree.leaves(t)])
  assert global_metrics.distance(a, b) == pytest.approx(np.linalg.norm(flat(a) - flat(b)))


def test_cells_are_runs_differing_only_in_seed():
  run = lambda name, **v: sources.Run(name, name, "pickle", {}, {k: str(x) for k, x in v.items()})
  runs = [run("a1", w=8, seed=1), run("b0", w=64, seed=0), run("a0", w=8, seed=0)]
  axes = ["w", "seed"]
  assert [[r.name for r in c] for c in global_metrics.cells(runs, axes)] == [["a0", "a1"], ["b0"]]
  one = global_metrics.cells(runs, axes, ("seed",))            # no non-seed axis: one cell
  assert len(one) == 1 and [r.name for r in one[0]][-1] == "a1"


def _saved_run(tmp_path, name, task="image_classification", width=8, **values):
  """A run folder holding only a parameters file (as `--params_output` writes it)."""
  folder = tmp_path / name
  folder.mkdir()
  params = {"Dense_0": {"kernel": np.zeros((3, width), np.float32),
                        "bias": np.zeros(width, np.float32)}}
  params_file.write(str(folder / "params.npz"), task, 4, {"seed": 0}, params, {})
  return sources.Run(name, str(folder / "raw.pkl"), "pickle", {},
                     {k: str(v) for k, v in values.items()})


def test_cells_of_different_networks_or_tasks_are_refused_before_work(tmp_path):
  runs = [_saved_run(tmp_path, "a", w=8, b=1, seed=0),
          _saved_run(tmp_path, "c", width=16, w=16, b=1, seed=0)]
  built = []
  settings = global_metrics.Settings(metrics=("dist",), group_by=("b",))
  with pytest.raises(errors.InputError, match="share a cell but not a network"):
    global_metrics.compute(runs, ["w", "b", "seed"], settings, log=built.append)
  assert not built                                               # refused before any cell
  with pytest.raises(ValueError, match="different networks"):
    global_metrics.distance(trained.load(str(tmp_path / "a")).params,
                            trained.load(str(tmp_path / "c")).params)
  runs = [_saved_run(tmp_path, "t0", task="transformer", w=8, seed=0),
          _saved_run(tmp_path, "t1", task="transformer", w=8, seed=1)]
  cka_settings = global_metrics.Settings(metrics=("cka",))
  with pytest.raises(errors.InputError, match="t0 is a transformer run"):
    global_metrics.compute(runs, ["w", "seed"], cka_settings, log=built.append)
  assert not built
  values = global_metrics.compute(runs, ["w", "seed"], global_metrics.Settings(metrics=("dist",)),
                                  log=built.append)
  assert values["t0"] == values["t1"] == {"dist": 0.0}


def test_batchnorm_statistics_are_recomputed_for_each_parameter_vector():
  import flax.linen as nn
  import optax

  from sam_edge.models import resnet, stateful
  from sam_edge.run.problem import Problem

  class Tiny(nn.Module):
    @nn.compact
    def __call__(self, x, train):
      return nn.Dense(2)(resnet.batch_norm(train, "bn")(nn.Dense(3)(x)))

  model, same = Tiny(), lambda images: images
  rng = np.random.default_rng(0)
  arrays = {"image": rng.normal(size=(10, 4)).astype(np.float32),
            "label": rng.integers(0, 2, size=10).astype(np.int32)}
  params, stats = stateful.init_variables(model, jax.random.key(0), arrays["image"][:1])
  train, evaluate = stateful.train_forward(model, same), stateful.eval_logits(model, same)

  def forward(p, s, batch, constants, dtype=jnp.float32):
    logits, new = train(p, s["batch_stats"], batch["image"])
    return logits, {"batch_stats": new}
  problem = Problem(
      forward=forward, params=params, train_arrays=arrays, evaluate=lambda p, s, c: {},
      output_loss=lambda o, b: jnp.mean(optax.softmax_cross_entropy_with_integer_labels(
          o, b["label"])), report=str, model_state={"batch_stats": stats},
      predict=lambda p, s, c, batch: evaluate(p, s["batch_stats"], batch["image"]))
  net = network_eval.NetworkEval(problem, batch_size=4)        # batches 0-3, 4-7; 8-9 dropped
  for scale in (1.0, 3.0):                                      # two parameter vectors
    w = jax.tree.map(lambda x: x * scale, params)
    h = arrays["image"] @ np.asarray(w["Dense_1"]["kernel"]) + np.asarray(w["Dense_1"]["bias"])
    recomputed = net.stats(w)["batch_stats"]
    got = recomputed["bn"]
    np.testing.assert_allclose(got["mean"], np.mean([h[:4].mean(0), h[4:8].mean(0)], 0),
                               rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(got["var"], np.mean([h[:4].var(0), h[4:8].var(0)], 0),
                               rtol=1e-5, atol=1e-6)
    logits = evaluate(w, recomputed, arrays["image"])
    assert net.measure(w, "error") == pytest.approx(
        float(np.mean(np.argmax(logits, -1) != arrays["label"])))


TINY = ["--nn_architecture=MLP", "--mlp_width=8", "--mlp_depth=2", "--step_size=0.05",
        "--batch_size=8", "--max_steps=4", "--hessian_check_gap=0", "--loss_curve_output=",
        "--eigs_curve_output=", "--eigs_se_only_output=", "--alignment_curve_output=",
        "--eval_curve_output="]


def test_compare_global_metrics_on_two_seeds(mock_mnist, tmp_path, capsys):
  folders = []
  for seed in (0, 1):
    folder = tmp_path / f"seed{seed}"
    folder.mkdir()
    cli.parse_flags(ic.FLAGS, ["image_classification", f"--tfds_data_dir={mock_mnist}", *TINY,
                               f"--seed={seed}", f"--raw_data_output={folder / 'raw.pkl'}",
                               f"--params_output={folder / 'params.npz'}"])
    assert ic.main([]) == 0
    folders.append(str(folder))
  # A run paired with itself: CKA 1 and distance 0.
  t = trained.load(folders[0])
  net = network_eval.NetworkEval(trained.problem(t, tfds_data_dir=str(mock_mnist)), 8)
  out = net.outputs(t.params, t.model_state, net.first("train", 768))
  assert out.shape == (24, 10)
  assert float(linear_cka(out, out)) == pytest.approx(1.0, abs=1e-6)
  assert global_metrics.distance(t.params, t.params) == 0.0
  assert net.measure(t.params, "error") == pytest.approx(
      float(np.mean(np.argmax(out, -1) != net.problem.train_arrays["label"])))

  code = compare.main([*folders, f"--out={tmp_path / 'cmp'}", "--global_metrics=cka,dist,curve",
                       "--curve_epochs=2", "--curve_batch_size=8", "--cka_examples=16"])
  assert code == 0, capsys.readouterr().err
  rows = list(csv.DictReader(open(tmp_path / "cmp" / "summary.csv")))
  assert len(rows) == 2
  for name in ("cka", "dist", "mc", "line_barrier"):
    assert rows[0][name] == rows[1][name] != ""
  assert 0 < float(rows[0]["cka"]) <= 1 and float(rows[0]["dist"]) > 0
  assert "curve " in capsys.readouterr().out

  member = "a0.npy"                                              # damage one array
  path = pathlib.Path(folders[1]) / "params.npz"
  with zipfile.ZipFile(path) as z:
    entries = {n: z.read(n) for n in z.namelist()}
  entries[member] = entries[member][:-1] + bytes([entries[member][-1] ^ 1])
  with zipfile.ZipFile(path, "w") as z:
    for n, b in entries.items():
      z.writestr(n, b)
  code = compare.main([*folders, f"--out={tmp_path / 'cmp2'}", "--global_metrics=dist"])
  err = capsys.readouterr().err.strip().splitlines()
  assert code == 2 and len(err) == 1 and "does not match its sha256" in err[0]


@pytest.mark.parametrize("extra, message", [
    (["--global_metrics=curvy"], "unknown metric 'curvy'"),
    (["--global_metrics=cka", "--cka_examples=0"], "--cka_examples must be at least 1"),
    (["--global_metrics=curve", "--curve_step_size=-1"], "--curve_step_size must be > 0"),
    (["--group_by=mlp_width"], "--group_by is for --global_metrics, which is not given"),
    (["--curve_epochs=5", "--cka_examples=9"], "--curve_epochs, --cka_examples are for"),
    (["--global_metrics=cka", "--cka_mixup_alpha=0"], "--cka_mixup_alpha must be > 0"),
    (["--cka_data=mixup"], "--cka_data is for --global_metrics"),
    (["--curve_split=test"], "--curve_split is for --global_metrics"),
])
def test_bad_global_flags_are_one_line(tmp_path, capsys, extra, message):
  assert compare.main([str(tmp_path), f"--out={tmp_path / 'o'}", *extra]) == 2
  err = capsys.readouterr().err.strip().splitlines()
  assert len(err) == 1 and message in err[0]


@pytest.mark.slow
def test_tiny_width_batch_sweep_end_to_end(tiny_sweep, real_tfds, tmp_path, capsys):
  """The shared tiny sweep (2 widths × 2 batch sizes × 2 seeds on MNIST), then compare with
  every metric between the runs of each cell."""
  assert len(list(tiny_sweep.glob("*/params.npz"))) == 8
  code = compare.main([str(tiny_sweep), f"--out={tmp_path / 'cmp'}",
                       "--phase_axes=mlp_width,batch_size", "--global_metrics=curve,cka,dist",
                       "--curve_epochs=2", "--curve_batch_size=50", "--cka_examples=100",
                       f"--tfds_data_dir={real_tfds}"])
  assert code == 0, capsys.readouterr().err
  rows = list(csv.DictReader(open(tmp_path / "cmp" / "summary.csv")))
  assert len(rows) == 8
  for r in rows:
    for name in ("mc", "line_barrier", "cka", "dist", "final_lambda1"):
      assert np.isfinite(float(r[name])), (r["run"], name)
  assert len({(r["mlp_width"], r["batch_size"]) for r in rows}) == 4
  assert (tmp_path / "cmp" / "phase.pdf").read_bytes().startswith(b"%PDF")
  assert "final_train_loss" in rows[0] and "ensemble_error" not in rows[0]


def test_phase_panels_follow_the_taxonomys_conventions():
  from sam_edge.plots import figure
  from sam_edge.studies import phase
  rows = [{"w": w, "b": b, "seed": s, "test_error": 0.1, "mc": mc, "final_lambda1": 2.0}
          for w, b, mc in (("8", "50", -0.2), ("64", "1000", 0.0), ("16", "200", 0.1))
          for s in ("0", "1")]
  maps, title = phase.phase_heatmaps(rows, "w", "b", None, ["w", "b", "seed"])
  by_metric = {m.colorbar: m for m in maps}
  assert set(by_metric) == {"test error", "mode connectivity mc", "final λ1"}
  for m in maps:
    assert m.log_axes and m.invert_y and list(m.xvalues) == [8, 16, 64]
  assert by_metric["mode connectivity mc"].centre == 0.0
  assert by_metric["final λ1"].log and not by_metric["test error"].log
  np.testing.assert_allclose(figure.log_edges(np.array([8.0, 16.0, 64.0])),
                             [64 / np.sqrt(128), np.sqrt(128), 32.0, 128.0])
  fig = figure.build(maps, columns=3, title=title)
  ax = fig.axes[0]
  assert ax.get_xscale() == "log" and ax.get_yscale() == "log"
  assert ax.get_ylim()[0] > ax.get_ylim()[1]                     # small batches at the top
  only = phase.phase_heatmaps(rows, "w", "b", "mc", ["w", "b", "seed"])[0]
  assert [m.colorbar for m in only] == ["mode connectivity mc"]


@pytest.mark.slow
def test_the_taxonomy_s_variants_on_the_tiny_sweep(tiny_sweep, real_tfds, tmp_path, capsys,
                                                   monkeypatch):
  """Mixup CKA is symmetric and 1 on itself; a cell of one run twice has an ensemble error equal
  to the run's test error, CKA 1, and E(t) on the straight line equal to that test error with
  --curve_split=test; phase.pdf of the sweep has the training-loss and ensemble panels."""
  run0, run1 = (tiny_sweep / f"mlp_width=8,batch_size=50,seed={s}" for s in (0, 1))
  a, b = trained.load(str(run0)), trained.load(str(run1))
  net = network_eval.NetworkEval(trained.problem(a, tfds_data_dir=str(real_tfds)), 50)
  settings = global_metrics.Settings(metrics=("cka",), cka_data="mixup", cka_examples=150)
  mixed = global_metrics.cka_batch(net, settings)
  plain = net.first("train", 150)
  assert mixed["image"].shape == plain["image"].shape and mixed["image"].dtype == np.float32
  assert not np.allclose(mixed["image"], plain["image"])
  np.testing.assert_array_equal(mixed["image"], global_metrics.cka_batch(net, settings)["image"])
  out_a, out_b = (net.outputs(t.params, t.model_state, mixed) for t in (a, b))
  ab, ba = float(linear_cka(out_a, out_b)), float(linear_cka(out_b, out_a))
  assert ab == pytest.approx(ba, rel=1e-6) and 0 < ab < 1
  assert float(linear_cka(out_a, out_a)) == pytest.approx(1.0, abs=1e-6)
  test_first = net.first("test", 150)                            # the 100 test examples
  assert len(test_first["label"]) == 100

  final = pickle.loads((run0 / "raw.pkl").read_bytes())["final"]
  code = compare.main([str(run0), str(run0), f"--out={tmp_path / 'twice'}",
                       "--global_metrics=ensemble_error,cka,curve", "--cka_data=mixup",
                       "--cka_examples=150", "--curve_split=test", "--curve_epochs=1",
                       "--curve_batch_size=50", f"--tfds_data_dir={real_tfds}"])
  assert code == 0, capsys.readouterr().err
  rows = list(csv.DictReader(open(tmp_path / "twice" / "summary.csv")))
  assert len(rows) == 2
  for r in rows:
    assert float(r["ensemble_error"]) == pytest.approx(final["test_error"], rel=1e-6)
    assert float(r["cka"]) == pytest.approx(1.0, abs=1e-6) and float(r["line_barrier"]) == 0
  line = next(x for x in capsys.readouterr().out.splitlines() if "on the line" in x)
  error = f"{final['test_error']:.4g}"
  assert line.split("on the line ")[1].startswith(f"[{', '.join([error] * 5)}]"), line

  drawn = helpers.capture_figures(monkeypatch)
  assert compare.main([str(tiny_sweep), f"--out={tmp_path / 'cmp'}",
                       "--phase_axes=mlp_width,batch_size", "--global_metrics=ensemble_error",
                       f"--tfds_data_dir={real_tfds}"]) == 0
  titles = [m.title for m in drawn["phase.pdf"]]
  assert titles[:2] == ["test error", "training loss (last epoch)"]     # the notebook's order
  assert "ensemble test error" in titles
  rows = list(csv.DictReader(open(tmp_path / "cmp" / "summary.csv")))
  for r in rows:
    raw = pickle.loads(open(r["source"], "rb").read())
    k = -(-raw["final"]["training_examples"] // int(r["batch_size"]))   # the last epoch's steps
    assert float(r["final_train_loss"]) == pytest.approx(np.mean(raw["losses"]["loss"][-k:]))
  cells = {}
  for r in rows:
    cells.setdefault((r["mlp_width"], r["batch_size"]), set()).add(r["ensemble_error"])
  assert len(cells) == 4 and all(len(v) == 1 and 0 <= float(v.pop()) <= 1 for v in cells.values())
  assert set(summary.OPTIONAL) >= {"final_train_loss", "ensemble_error"}
