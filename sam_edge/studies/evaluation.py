"""A run's saved parameters evaluated after training (`python -m sam_edge.evaluate`).

On a split S of the rebuilt run (`trained.problem`: its training set, label noise included; its
test set; its validation set where it has one), over its N examples or the first `examples`,
with f̄(w, s; x) the network's evaluation-mode outputs (BatchNorm with the run's stored running
statistics s, `Problem.predict`) and ℓ the run's own loss of outputs (`--loss` with
`--label_smoothing`: `Problem.output_loss`, the loss its steps followed):

    loss  = L(w) = (1/N) Σ_i ℓ(f̄(w, s; x_i), y_i)
    error = (1/N) Σ_i [argmax_c f̄_c(w, s; x_i) ≠ y_i]
    top5  = (1/N) Σ_i [#{c : f̄_c(x_i) > f̄_{y_i}(x_i)} ≥ 5]     (y_i not among the 5 largest
            outputs, ties counted in its favour and a NaN output above it; only with ≥ 10
            classes, else null)
    λ1, tr(H) of H = ∇²_w L(w), s held fixed

λ1 is Lanczos on exact HVPs and tr(H) the run's trace estimator (Hutch++ unless the run chose
Hutchinson) with its standard error, both through the measurement's own code
(`curvature.measure.make_measure`: matmul precision "highest", `--measure_chunk` examples at a
time), with the run's `--lanczos_max_steps`, `--lanczos_tol`, `--trace_probes` and
`--trace_method` unless `Settings` overrides them; the Lanczos start and the probes come from
`seed`. Asking for the trace runs λ1's Lanczos too (one measurement). The run's own `test_loss`
is the unsmoothed loss: on the test split `loss` equals it when --label_smoothing is 0.
"""

import dataclasses
import os
import time
from typing import Any, Callable, Optional

import jax
import jax.numpy as jnp
import numpy as np

from sam_edge import errors
from sam_edge.curvature import measure, registry
from sam_edge.curvature.kinds.trace import TraceSettings
from sam_edge.data import batching, image_specs, images
from sam_edge.run.problem import Problem
from sam_edge.studies import evaluated, network_eval, trained


@dataclasses.dataclass(frozen=True)
class Settings:
  """What to evaluate (the command's flags, checked); None: the run's own value."""
  split: str = "train"
  metrics: tuple[str, ...] = evaluated.METRICS
  examples: Optional[int] = None          # the first N examples of the split (None: all)
  seed: int = 0
  lanczos_max_steps: Optional[int] = None
  trace_probes: Optional[int] = None
  measure_chunk: Optional[int] = None
  manual_dir: Optional[str] = None
  tfds_data_dir: Optional[str] = None


def check_run(t: trained.Trained, split: str) -> None:
  """InputError (one line) unless `t` is an image_classification run that has `split`: train and
  test always, validation when its config holds a positive `validation_fraction`."""
  trained.check_image(t, "evaluate supports")
  fraction = t.config.get("validation_fraction")
  has_validation = isinstance(fraction, (int, float)) and fraction > 0
  if split not in evaluated.SPLITS or (split == "validation" and not has_validation):
    raise errors.InputError(f"{t.path}: this run has no {split} split (it was trained without "
                            "--validation_fraction)")


def split_size(t: trained.Trained, split: str) -> Optional[int]:
  """The examples of `split` in the rebuilt run, known without reading the data: the dataset's
  split (`image_specs.SPECS`) cut to the run's mini set (`images.num_kept`); None for a
  validation split or a dataset not in `image_specs`."""
  v = trained.values(t)
  spec = image_specs.SPECS.get(v.get("dataset"))
  if spec is None or split not in ("train", "test"):
    return None
  whole, batches = ((spec.train_size, v["mini_training_set_num_batches"]) if split == "train"
                    else (spec.test_size, v["mini_test_set_num_batches"]))
  return images.num_kept(whole, batches, int(v["batch_size"]))


def check_sizes(t: trained.Trained, s: Settings) -> None:
  """InputError (one line naming the run) unless `s` fits the run, before any data is read:
  `examples` at most the split's size, λ1 and the trace measurable (`measure_settings`), their
  chunk dividing the examples. A size known only from the data is checked by `entry`."""
  n = split_size(t, s.split)
  if s.examples is not None and n is not None and s.examples > n:
    raise errors.InputError(f"{t.path}: --examples={s.examples}: the run's {s.split} split has "
                            f"{n} examples")
  if any(m in s.metrics for m in evaluated.CURVATURE):
    chunk_problem(measure_settings(t, s).chunk, s.examples or n, s, t.path)


def chunk_problem(chunk: Optional[int], n: Optional[int], s: Settings, path: str) -> None:
  """InputError (one line) when the chunk of λ1 and the trace does not divide the `n` examples
  (None: not known yet)."""
  if chunk and n and n % chunk:
    whose = "" if s.measure_chunk else " (the run's)"
    raise errors.InputError(f"{path}: --measure_chunk={chunk}{whose} does not divide the {n} "
                            f"{s.split} examples evaluated; choose --examples or --measure_chunk "
                            "to fit")


def split_arrays(p: Problem, split: str, examples: Optional[int]) -> dict:
  """The host arrays of `split` (train: the run's training set), its first `examples` rows when
  given; InputError when the split is missing or shorter."""
  arrays = p.train_arrays if split == "train" else p.held_out.get(split)
  if arrays is None:
    raise errors.InputError(f"this run has no {split} split")
  n = batching.num_examples(arrays)
  if examples is not None and examples > n:
    raise errors.InputError(f"--examples={examples}: the run's {split} split has {n} examples")
  return {k: np.asarray(v)[:examples or n] for k, v in arrays.items()}


def output_metrics(p: Problem, arrays: dict, metrics: tuple[str, ...]
                   ) -> dict[str, Optional[float]]:
  """{loss, error, top5} of the problem's parameters on `arrays`, those of `metrics` (module
  doc; `network_eval.means`, jitted); top5 None with fewer than `evaluated.TOP5_CLASSES` classes."""
  wanted = [m for m in evaluated.OUTPUTS if m in metrics]
  classes = jax.eval_shape(lambda b: p.predict(p.params, p.model_state, p.constants, b),
                           jax.tree.map(lambda a: a[:1], arrays)).shape[-1]
  computed = [m for m in wanted if m != "top5" or classes >= evaluated.TOP5_CLASSES]
  if not computed:
    return {m: None for m in wanted}
  means = jax.jit(lambda args, a: network_eval.means(p, *args, a, computed))(
      (p.params, p.model_state, p.constants), jax.device_put(arrays))    # constants: an argument
  return {m: float(means[m]) if m in means else None for m in wanted}


def measure_settings(t: trained.Trained, s: Settings) -> measure.MeasureSettings:
  """How λ1 and the trace are measured (module doc): the run's settings, `s` over them.
  InputError (one line) for settings the measurement cannot run."""
  v = trained.values(t, lanczos_max_steps=s.lanczos_max_steps, trace_probes=s.trace_probes,
                     measure_chunk=s.measure_chunk)
  kinds: registry.Requested = ()
  if "trace" in s.metrics:
    kinds = (("trace", TraceSettings(probes=v["trace_probes"], method=v["trace_method"])),)
  found = registry.problems(kinds) + registry.size_problems(
      kinds, sum(np.size(x) for x in jax.tree.leaves(t.params)))
  if found:
    raise errors.InputError("; ".join(found))
  steps = int(v["lanczos_max_steps"])
  return measure.MeasureSettings(max_steps=steps, tol=float(v["lanczos_tol"]),
                                 min_steps=min(3, steps), curvature=kinds,
                                 chunk=v["measure_chunk"] or None)


def curvature(p: Problem, arrays: dict, settings: measure.MeasureSettings, key: jax.Array
              ) -> dict[str, Any]:
  """The measurement's record of H at the problem's parameters on `arrays` taken as one batch,
  in evaluation mode (module doc), as host values."""
  forward = lambda w, state, batch, c, dtype: (p.predict(w, state, c, batch), state)   # float32
  run = measure.make_measure(forward, p.output_loss, settings)
  params = jax.device_put(p.params)
  context = measure.Context(p.model_state, settings.method.optimizer.make().init(params),
                            jnp.asarray(0, jnp.int32), p.constants)
  record, _ = run(params, context, jax.device_put(arrays), measure.init_state(settings, params),
                  key)
  return jax.device_get(record)


def entry(t: trained.Trained, name: str, folder: str, s: Settings,
          log: Callable[[str], None] = print) -> dict[str, Any]:
  """One run's entry of the evaluation file (`evaluated` module doc)."""
  start = time.perf_counter()
  p = trained.problem(t, manual_dir=s.manual_dir, tfds_data_dir=s.tfds_data_dir)
  arrays = split_arrays(p, s.split, s.examples)
  n = batching.num_examples(arrays)
  out: dict[str, Any] = {"run": name, "folder": folder, "params": os.path.abspath(t.path),
                         "task": t.task, "step": t.step, "split": s.split, "examples": n}
  if any(m in s.metrics for m in evaluated.OUTPUTS):
    out.update(output_metrics(p, arrays, s.metrics))
  if any(m in s.metrics for m in evaluated.CURVATURE):
    settings = measure_settings(t, s)
    chunk_problem(settings.chunk, n, s, t.path)
    log(f"{name}: λ1{' and tr(H)' if 'trace' in s.metrics else ''} on {n} {s.split} examples")
    r = curvature(p, arrays, settings, jax.random.PRNGKey(s.seed))
    if "lambda1" in s.metrics:
      out["lambda1"] = {"value": float(r["eigenvalues"][0]),
                        "residual": float(r["residuals"][0]),
                        "converged": bool(r["converged"]), "hvps": int(r["hvps"]),
                        "max_steps": settings.max_steps, "tol": settings.tol}
    if "trace" in s.metrics:
      out["trace"] = {"value": float(r["trace"]), "stderr": float(r["trace_stderr"]),
                      "probes": int(r["trace_hvps"]),
                      "method": settings.curvature[0][1].method}
  out["seconds"] = time.perf_counter() - start
  return out
