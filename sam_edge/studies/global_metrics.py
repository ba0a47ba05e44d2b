"""Metrics between runs (`compare --global_metrics=curve,cka,dist,ensemble_error`): runs that
differ only in their seed form a cell, and each metric is the mean over the cell's pairs of
distinct runs (the ensemble: over the cell's runs together).

    dist = ‖θᵢ − θⱼ‖₂ over the trainable parameters (BatchNorm statistics left out)
    cka  = linear CKA of the two runs' softmax outputs on the first `cka_examples` examples of
           `cka_data`: the training set, the test set, or the training examples mixed as the
           taxonomy's mixup CKA does (α = `cka_mixup_alpha`, the mixes fixed by `seed`), each
           run in evaluation mode with its own statistics (CKA below)
    mc, line_barrier = mode connectivity of the Bezier curve and of the straight line between
           the pair (`connectivity.py`), the bend trained on the training set, E(t) the error
           (or loss) on `curve_split` (training or test set) with BatchNorm statistics
           recomputed on the training set at each t (`network_eval.py`); only the first
           `curve_pairs` pairs of a cell (in seed order) are connected, the costly part
    ensemble_error = (1/N) Σ_i [argmax_c (1/K) Σ_k p_k,c(x_i) ≠ y_i], the test error of the
           averaged softmax outputs p_k of the cell's K runs (each in evaluation mode with its own
           BatchNorm statistics): the taxonomy's `test_ensemble_average` (Yang et al. 2021,
           loss_acc.py --ensemble-average-acc); K identical runs have their error

dist and cka are symmetric, so the mean over ordered pairs (i, j), i ≠ j, is the mean over the
unordered ones computed here; a curve between i and j is the curve between j and i run
backwards, so mc and line_barrier are symmetric too. Every run of a cell gets the cell's values
in summary.csv. The network and the data of a cell are rebuilt once, from its first run's
config (`trained.problem`); a cell of one run has no pairs and gets no values (no ensemble
either).

CKA is linear centred kernel alignment (Kornblith et al. 2019), in the biased-HSIC form the
taxonomy uses. For features X [n, p] and Y [n, q] of the same n examples, with H = I − 11ᵀ/n
centring the rows, K = X Xᵀ and L = Y Yᵀ (linear kernels), HSIC(K, L) = tr(K H L H) / (n − 1)² and

    CKA(X, Y) = HSIC(K, L) / sqrt(HSIC(K, K) HSIC(L, L))
              = ‖Ycᵀ Xc‖²_F / (‖Xcᵀ Xc‖_F ‖Ycᵀ Yc‖_F),      Xc = H X, Yc = H Y,

the second form never building the n × n kernels. CKA ∈ [0, 1]; CKA(X, X) = 1, and it is
unchanged by an orthogonal transform X Q, an isotropic scaling c X (c ≠ 0) or a constant shift
X + 1 bᵀ of either argument. The runs' features are their softmax outputs (class probabilities).

The taxonomy's CKA is on mixup data (`--mixup-CKA --mixup-alpha 16`: CKA_utils.all_latent and
utils.mixup_data): the examples in consecutive batches of B = 128 (its loader's batch), and in
batch b one λ_b ~ Beta(α, α) and one permutation π_b of the batch's rows,

    x̃_i = λ_b x_i + (1 − λ_b) x_{π_b(i)},

both networks of a pair seeing the same x̃ (`mixup`). The images are mixed as float pixel
values: the preprocessing x/256 − mean is affine with weights summing to one, so mixing before or
after it is the same.
"""

import dataclasses
import itertools
import math
from typing import Callable, Optional

import jax
import jax.numpy as jnp
import numpy as np

from sam_edge import errors
from sam_edge.models import losses
from sam_edge.studies import connectivity, network_eval, sources, summary, trained

COLUMNS = {"curve": ("mc", "line_barrier"), "cka": ("cka",), "dist": ("dist",),
           "ensemble_error": ("ensemble_error",)}
METRICS = tuple(COLUMNS)
OUTPUTS = ("curve", "cka", "ensemble_error")     # the metrics that need evaluation-mode outputs
MIXUP_STREAM = 2 ** 31 - 1             # fold_in(key(seed), this): the mixup's key
MIXUP_BATCH = 128                      # the taxonomy's batch of mixed examples
MIXUP_ALPHA = 16.0                     # its α (example_experiment.py: --mixup-alpha 16)


@dataclasses.dataclass(frozen=True)
class Settings:
  """What to compute between runs and how (the flags of `compare.define_global_flags`)."""
  metrics: tuple[str, ...]
  curve: connectivity.CurveSettings = connectivity.CurveSettings()
  curve_pairs: int = 1
  curve_metric: str = "error"
  cka_examples: int = 768
  curve_split: str = "train"
  cka_data: str = "train"
  cka_mixup_alpha: float = MIXUP_ALPHA
  group_by: tuple[str, ...] = ()            # () : every non-seed axis
  seed: int = 0
  manual_dir: Optional[str] = None
  tfds_data_dir: Optional[str] = None


@jax.jit
def linear_cka(x: jax.Array, y: jax.Array) -> jax.Array:
  """CKA of features `x` [n, p] and `y` [n, q] (module doc), computed in float32 or above."""
  x = x.astype(jnp.promote_types(x.dtype, jnp.float32))
  y = y.astype(jnp.promote_types(y.dtype, jnp.float32))
  xc = x - jnp.mean(x, axis=0, keepdims=True)
  yc = y - jnp.mean(y, axis=0, keepdims=True)
  cross = jnp.sum(jnp.square(yc.T @ xc))
  return cross / (jnp.linalg.norm(xc.T @ xc) * jnp.linalg.norm(yc.T @ yc))


def mixup(images: jax.Array, key: jax.Array, alpha: float) -> jax.Array:
  """The images mixed as in the module doc, float32 [n, ...]: batch b (rows b·B .. b·B + B − 1,
  the last one shorter) draws λ_b and π_b from `fold_in(key, b)`, so a key fixes every mix."""
  parts = []
  for b, start in enumerate(range(0, images.shape[0], MIXUP_BATCH)):
    x = jnp.asarray(images[start:start + MIXUP_BATCH], jnp.float32)
    lam_key, perm_key = jax.random.split(jax.random.fold_in(key, b))
    lam = jax.random.beta(lam_key, alpha, alpha)
    parts.append(lam * x + (1.0 - lam) * x[jax.random.permutation(perm_key, x.shape[0])])
  return jnp.concatenate(parts)


@jax.jit
def ensemble_error(probabilities: jax.Array, labels: jax.Array) -> jax.Array:
  """The module doc's ensemble_error of `probabilities` [K, N, classes] against `labels` [N]."""
  return jnp.mean(losses.misclassified(jnp.mean(probabilities, axis=0), labels))


def cells(runs: list[sources.Run], axes: list[str], group_by: tuple[str, ...] = ()
          ) -> list[list[sources.Run]]:
  """The runs grouped by every non-seed axis (or by the axes `group_by`), each cell sorted by
  seed, in the order their first runs come."""
  keys = summary.non_seed(list(group_by or axes))
  found = summary.groups(runs, lambda r: tuple(summary.value_of(r, a) for a in keys))
  seed = lambda r: (summary.numeric([summary.value_of(r, summary.SEED)]) or [0.0])[0]
  return [sorted(members, key=seed) for members in found.values()]


def same_network(a: trained.PyTree, b: trained.PyTree) -> bool:
  """Whether two parameter trees have the same structure and leaf shapes."""
  la, ta = jax.tree.flatten(a)
  lb, tb = jax.tree.flatten(b)
  return ta == tb and all(np.shape(x) == np.shape(y) for x, y in zip(la, lb))


def distance(a: trained.PyTree, b: trained.PyTree) -> float:
  """‖a − b‖₂ over every leaf, in float64; ValueError for trees of different networks."""
  if not same_network(a, b):
    raise ValueError("the distance between two different networks is not defined")
  sq = [np.sum(np.square(np.asarray(x, np.float64) - np.asarray(y, np.float64)))
        for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b))]
  return float(math.sqrt(sum(sq)))


def check_cells(groups: list[list[str]], loaded: dict[str, trained.Trained], s: Settings) -> None:
  """InputError (one line) unless the runs of each cell of two or more (their names; `loaded`:
  {name: its parameters}) share one network (a `--group_by` without the width mixes networks)
  and, for OUTPUTS, are image_classification runs."""
  outputs = any(m in s.metrics for m in OUTPUTS)
  for first, *rest in (names for names in groups if len(names) > 1):
    for name in rest:
      if not same_network(loaded[first].params, loaded[name].params):
        raise errors.InputError(
            f"--global_metrics: runs {first} and {name} share a cell but not a network (their "
            f"parameters differ in shape); choose --group_by so that a cell's runs differ "
            f"only in their seed")
    for name in (first, *rest):
      if outputs and loaded[name].task != trained.IMAGE_TASK:
        raise errors.InputError(
            f"--global_metrics: cka, curve and ensemble_error need evaluation-mode outputs, "
            f"which only {trained.IMAGE_TASK} runs offer; {name} is a {loaded[name].task} run "
            f"(dist works for every run)")


def cell_metrics(members: list[trained.Trained], s: Settings,
                 log: Callable[[str], None]) -> dict[str, float]:
  """{column: mean over the cell's pairs} for the requested metrics (module doc)."""
  pairs = list(itertools.combinations(members, 2))
  if not pairs:
    return {}
  out: dict[str, float] = {}
  if "dist" in s.metrics:
    out["dist"] = float(np.mean([distance(a.params, b.params) for a, b in pairs]))
  if not any(m in s.metrics for m in OUTPUTS):
    return out
  problem = trained.problem(members[0], manual_dir=s.manual_dir, tfds_data_dir=s.tfds_data_dir)
  net = network_eval.NetworkEval(problem, s.curve.batch_size)
  if "cka" in s.metrics:
    batch = cka_batch(net, s)
    outputs = [net.outputs(m.params, m.model_state, batch) for m in members]
    out["cka"] = float(np.mean([float(linear_cka(a, b))
                                for a, b in itertools.combinations(outputs, 2)]))
  if "ensemble_error" in s.metrics:
    probs = np.stack([np.asarray(net.probabilities(m.params, m.model_state, "test"))
                      for m in members])
    out["ensemble_error"] = float(ensemble_error(probs, net.split("test")["label"]))
  if "curve" in s.metrics:
    found = []
    for k, (a, b) in enumerate(pairs[:s.curve_pairs]):
      key = jax.random.fold_in(jax.random.key(s.seed), k)
      result = connectivity.connect(
          net.loss, lambda w: net.measure(w, s.curve_metric, s.curve_split), a.params,
          b.params, net.arrays, s.curve, key)
      log(f"curve {a.path} -> {b.path}: E on the curve {_fmt(result['curve'])}, on the line "
          f"{_fmt(result['line'])}: mc {result['mc']:.4g}, line barrier "
          f"{result['line_barrier']:.4g}")
      found.append(result)
    out.update({c: float(np.mean([r[c] for r in found])) for c in COLUMNS["curve"]})
  return out


def cka_batch(net: network_eval.NetworkEval, s: Settings) -> dict:
  """The examples CKA compares (module doc); the mixup's key, fold_in(key(seed), MIXUP_STREAM),
  gives every pair of every cell the same mixes."""
  batch = net.first("test" if s.cka_data == "test" else "train", s.cka_examples)
  if s.cka_data != "mixup":
    return batch
  key = jax.random.fold_in(jax.random.key(s.seed), MIXUP_STREAM)
  return {**batch, "image": mixup(batch["image"], key, s.cka_mixup_alpha)}


def _fmt(values: list[float]) -> str:
  return "[" + ", ".join(f"{v:.4g}" for v in values) + "]"


def compute(runs: list[sources.Run], axes: list[str], s: Settings,
            log: Callable[[str], None] = print) -> dict[str, dict[str, float]]:
  """{run name: {column: value}}: every run gets its cell's metrics (module doc). Every
  parameters file and cell is checked first: InputError, one line, before any long work."""
  loaded = {run.name: trained.load(run.folder) for run in runs}
  groups = [[r.name for r in members] for members in cells(runs, axes, s.group_by)]
  check_cells(groups, loaded, s)
  out: dict[str, dict[str, float]] = {}
  for k, names in enumerate(groups, 1):
    log(f"global metrics, cell {k}/{len(groups)} ({len(names)} runs: {', '.join(names)})")
    out.update(dict.fromkeys(names, cell_metrics([loaded[n] for n in names], s, log)))
  return out


def columns(s: Settings) -> list[str]:
  """The summary.csv columns the requested metrics fill."""
  return [c for m in METRICS if m in s.metrics for c in COLUMNS[m]]


def problems(s: Settings) -> list[str]:
  """Problems of the flags (one line each)."""
  found = [f"--global_metrics: unknown metric {m!r}; use some of {', '.join(METRICS)}"
           for m in s.metrics if m not in METRICS]
  if not (math.isfinite(s.cka_mixup_alpha) and s.cka_mixup_alpha > 0):
    found.append(f"--cka_mixup_alpha must be > 0, got {s.cka_mixup_alpha}")
  for name, value in (("curve_pairs", s.curve_pairs), ("cka_examples", s.cka_examples),
                      ("curve_epochs", s.curve.epochs), ("curve_batch_size", s.curve.batch_size)):
    if value < 1:
      found.append(f"--{name} must be at least 1, got {value}")
  if not (math.isfinite(s.curve.step_size) and s.curve.step_size > 0):
    found.append(f"--curve_step_size must be > 0, got {s.curve.step_size}")
  if not 0 <= s.curve.momentum < 1:
    found.append(f"--curve_momentum must lie in [0, 1), got {s.curve.momentum}")
  return found


def check_runs(runs: list[sources.Run]) -> None:
  """InputError unless every run is a finished run of ours (not a reference raw.txt)."""
  other = [r.name for r in runs if r.kind != "pickle"]
  if other:
    raise errors.InputError(f"--global_metrics needs finished runs with parameters; "
                            f"{', '.join(other[:3])} {'is' if len(other) == 1 else 'are'} not")
