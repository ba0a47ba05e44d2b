"""The image networks by name, each with its own flags, and the activations and losses the flags
offer: what the command line defines and checks without importing jax or flax (a network's
module is imported when it is built).

An architecture's option `<prefix>_<field>` is its module's attribute `<field>` (`--mlp_width` is
`vision.MLP.width`); `build` passes the options' values with the entry's `fixed` attributes,
`num_classes` and `activation`. Adding a network is its module plus one entry of ARCHITECTURES.
`vision`, `resnet` and `losses` implement exactly these names (tests/test_models_registry.py).
"""

import dataclasses
import importlib
from typing import Any, Callable, Mapping

from sam_edge.options import Check, Option

ACTIVATIONS = ("relu", "tanh", "elu", "gelu", "softplus")        # vision.ACTIVATIONS
LOSS_FORMULAS: dict[str, str] = {                                # losses.LOSSES
    "squared_error": "mean over all B×C entries of (logit − onehot)² (the reference's)",
    "sum_squared_error": "mean over examples of Σ_classes (logit − onehot)² (C × squared_error)",
    "half_sum_squared_error": "mean over examples of ½ Σ_classes (logit − onehot)² (Cohen et al.)",
    "cross_entropy": "mean over examples of −log softmax(logits)[label]",
}
# (option values, image side s, "the s x s images of <dataset>") -> why the network cannot be
# built for them (lines naming the flags), given that each option passed its own check.
Fit = Callable[[Mapping[str, Any], int, str], list[str]]


def at_least(low: int) -> Check:
  """The check x ≥ low."""
  return lambda x: None if x >= low else f"must be at least {low}"


def _cnn_fit(values: Mapping[str, Any], side: int, images: str) -> list[str]:
  """Each block's 2x2 max-pool halves the side: at most ⌊log2 side⌋ blocks."""
  blocks, most = values["cnn_num_blocks"], side.bit_length() - 1
  return [f"--cnn_num_blocks={blocks} is too deep for {images}: each block halves the size, so "
          f"at most {most} blocks"] if blocks > most else []


@dataclasses.dataclass(frozen=True)
class Architecture:
  """One `--nn_architecture`: `constructor` "module.Class" of `sam_edge.models`, its `options`,
  the constructor's `fixed` attributes, whether it keeps BatchNorm statistics (`batch_norm`), and
  `fit`, its checks against the images. `reference_flags`: its flags are the reference's,
  accepted (and ignored) with any other network and not shown in titles; any other network's
  flags given with another network are an error."""
  name: str
  constructor: str
  options: tuple[Option, ...] = ()
  fixed: tuple[tuple[str, Any], ...] = ()
  batch_norm: bool = False
  reference_flags: bool = False
  fit: Fit = lambda values, side, images: []


ARCHITECTURES: tuple[Architecture, ...] = (
    Architecture("MLP", "vision.MLP", (
        Option("mlp_depth", 4, "Dense layers of the MLP, the output layer included.",
               check=at_least(2)),
        Option("mlp_width", 1000, "Width of the MLP's hidden layers.", check=at_least(1))),
        reference_flags=True),
    Architecture("CNN", "vision.CNN", (
        Option("cnn_num_blocks", 2, "Blocks of the CNN (each ends in a 2x2 max-pool).",
               check=at_least(1)),
        Option("cnn_layers_per_block", 1, "3x3 convolutions per CNN block.", check=at_least(1)),
        Option("cnn_feature_multiplier", 16, "Channels of block i: 2**i times this.",
               check=at_least(1))), reference_flags=True, fit=_cnn_fit),
    Architecture("ResNet20", "resnet.ResNet", fixed=(("blocks_per_stage", 3),), batch_norm=True),
    Architecture("ResNet32", "resnet.ResNet", fixed=(("blocks_per_stage", 5),), batch_norm=True),
    Architecture("WRN16_8", "resnet.WideResNet", fixed=(("depth", 16), ("widen_factor", 8)),
                 batch_norm=True),
    Architecture("WRN28_10", "resnet.WideResNet", fixed=(("depth", 28), ("widen_factor", 10)),
                 batch_norm=True),
    Architecture("ResNet18", "resnet.ResNet18", (
        Option("resnet_width", 64, "k: ResNet18's channel widths are (k, 2k, 4k, 8k); 64 is the "
               "standard CIFAR ResNet-18, the taxonomy (Yang et al. 2021) sweeps k from 2 to 128.",
               check=at_least(1)),), batch_norm=True),
    Architecture("ResNet50", "imagenet_resnet.ResNet50", batch_norm=True),
    Architecture("ViT", "vit.ViT", tuple(Option(f"vit_{field}", default, f"ViT: {text}.",
                                                check=at_least(1)) for field, default, text in (
        ("patch_size", 4, "side p of its square patches (p must divide the image side)"),
        ("depth", 12, "pre-LN Transformer encoder blocks L"),
        ("width", 192, "token width d (a multiple of --vit_heads)"),
        ("heads", 3, "attention heads h"),
        ("mlp_width", 768, "hidden width m of each block's MLP (GELU)"))),
        fit=lambda v, side, images: [line for bad, line in (
            (v["vit_width"] % v["vit_heads"], f"--vit_width={v['vit_width']} must be a multiple "
             f"of --vit_heads={v['vit_heads']}"), (side % v["vit_patch_size"], f"--vit_patch_size="
             f"{v['vit_patch_size']} must divide the side of {images}")) if bad]),
)
BY_NAME: dict[str, Architecture] = {a.name: a for a in ARCHITECTURES}
NAMES = tuple(BY_NAME)


def all_options() -> list[Option]:
  """Every architecture's flags, in registry order."""
  return [o for a in ARCHITECTURES for o in a.options]


def build(name: str, given: Mapping[str, Any] | None = None, *, num_classes: int,
          activation: str = "relu") -> Any:
  """The (unbound) flax module of the network `name`: its constructor called with the entry's
  fixed attributes, `num_classes`, `activation` and the value of each of its options (`given`
  {option: value}, the default where missing). ValueError for an unknown name or option."""
  if name not in BY_NAME:
    raise ValueError(f"Unknown architecture {name!r}; expected one of {NAMES}")
  entry, rest = BY_NAME[name], dict(given or {})
  fields = {o.name.split("_", 1)[1]: rest.pop(o.name, o.default) for o in entry.options}
  if rest:
    raise ValueError(f"{name} has no options {sorted(rest)}")
  module, constructor = entry.constructor.split(".")
  network = getattr(importlib.import_module(f"sam_edge.models.{module}"), constructor)
  return network(**dict(entry.fixed), **fields, num_classes=num_classes, activation=activation)
