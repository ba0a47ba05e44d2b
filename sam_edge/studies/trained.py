"""A trained run read back: its final parameters (`--params_output`, `run.params_file`) and the
problem rebuilt from its config, for the metrics between runs, the evaluations and the landscapes.

    t = trained.load("sweep/mlp_width=8,seed=0")      # a run folder, or the .npz itself
    t.config["mlp_width"], t.params, t.model_state    # {"batch_stats": ...} or {}
    p = trained.problem(t, manual_dir="../shared/data/mnist")
    loss = trained.eval_loss(p)                      # (params, model_state, batch) -> mean loss
    loss(t.params, t.model_state, trained.batch(p, range(500)))

`problem(t)` is the `run.problem.Problem` the run trained, built again from its config and its
seed's init key, so the training set is the run's own, label noise included (a linearized run
started from `--init_params` is expanded around that file's parameters again, so the file must
still be where the run read it). The evaluation-mode loss is

    eval_loss(p)(w, s, batch) = output_loss(p.predict(w, s, constants, batch), batch),

the training loss with BatchNorm's running statistics `s`, as the test error sees the network;
`Problem.forward` is the training step's train-mode pass (batch statistics).
"""

import dataclasses
from typing import Any, Callable, Iterable, Optional

import jax
import numpy as np

from sam_edge import errors
from sam_edge.cli import config
from sam_edge.pytree import PyTree
from sam_edge.run import init_params, params_file, run_folder
from sam_edge.run.problem import Problem, keys
from sam_edge.studies import commands

IMAGE_TASK = "image_classification"     # the task whose runs have evaluation-mode outputs


@dataclasses.dataclass(frozen=True)
class Trained:
  """A run's final parameters as written by `--params_output` (module doc)."""
  path: str            # the parameters file read
  task: str            # the entry point: "image_classification" or "transformer"
  step: int            # the training steps done
  config: dict         # the run's flag values (as in its raw pickle's config)
  params: PyTree       # nested dicts of numpy arrays
  model_state: PyTree  # {"batch_stats": ...} for BatchNorm networks, else {}
  ema: Optional[PyTree] = None   # {"params", "model_state"} of --ema_decay's average, or None
  best: Optional[PyTree] = None  # {"params", "model_state"} of the best evaluation, or None


def load(path: str) -> Trained:
  """The parameters file at `path` (or in the run folder `path`: `run_folder.params_path`),
  verified against its checksums; `params_file.ParamsError` (an InputError, one line) if it is
  unsound."""
  found = run_folder.params_path(path)
  return Trained(found, *params_file.read(found))        # the fields of `params_file.Saved`


def check_image(t: Trained, supports: str) -> None:
  """InputError (one line) unless `t` is an IMAGE_TASK run; `supports` says who asks, e.g.
  "evaluate supports"."""
  if t.task != IMAGE_TASK:
    raise errors.InputError(f"{t.path}: a {t.task} run; {supports} {IMAGE_TASK} runs "
                            "(evaluation-mode outputs)")


def values(t: Trained, **replace: Any) -> dict:
  """The run's flag values: the entry point's defaults, the run's config over them, then every
  `replace` value that is not None (`cli.config.full_values`)."""
  return config.full_values(commands.load_entry(t.task).TASK, t.config,
                            replace={k: v for k, v in replace.items() if v is not None})


def run_config(t: Trained, **replace: Any) -> config.RunConfig:
  """The run's config rebuilt from its saved values (`values`)."""
  return config.of_values(commands.load_entry(t.task).TASK, values(t, **replace))


def problem(t: Trained, *, manual_dir: Optional[str] = None,
            tfds_data_dir: Optional[str] = None) -> Problem:
  """The run's problem rebuilt (module doc), holding the trained parameters and model state;
  `manual_dir` and `tfds_data_dir`, when given, replace the run's data folders."""
  c = run_config(t, manual_dir=manual_dir, tfds_data_dir=tfds_data_dir)
  built = commands.load_entry(t.task).TASK.build(c.problem, keys(c.run.seed)["init"])
  if c.run.init_params and c.values["regime"] == "linearized":  # its w0: where it started from
    built, _ = init_params.initialise(built, c.run.init_params)
  return dataclasses.replace(built, params=jax.tree.map(np.asarray, t.params),
                             model_state=jax.tree.map(np.asarray, t.model_state))


def eval_loss(p: Problem) -> Callable[..., jax.Array]:
  """`(params, model_state, batch[, constants]) -> mean training loss` in evaluation mode (module
  doc); `constants` defaults to the problem's (pass them to keep them a jit argument).
  InputError if the task offers no evaluation-mode outputs (`Problem.predict`)."""
  if p.predict is None:
    raise errors.InputError("this task's runs offer no evaluation-mode outputs (only "
                            "image_classification runs do)")
  return lambda w, s, batch, constants=p.constants: p.output_loss(
      p.predict(w, s, constants, batch), batch)


def batch(p: Problem, indices: Iterable[int]) -> dict:
  """The training examples `indices` of `p` (host arrays, un-augmented)."""
  idx = np.asarray(list(indices), dtype=np.int64)
  return {k: np.asarray(v)[idx] for k, v in p.train_arrays.items()}
