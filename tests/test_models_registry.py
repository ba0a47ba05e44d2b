"""The image networks by name (`models.registry`, no jax): the names the flags offer are those the
models implement, each entry builds its module from its options, and the options' checks are
one line each."""

import pytest

import image_classification as ic
from sam_edge.cli import flags as cli_flags
from sam_edge.models import imagenet_resnet, losses, registry, resnet, vision


def test_registry_names_are_implemented():
  assert tuple(vision.ACTIVATIONS) == registry.ACTIVATIONS
  assert list(losses.LOSSES) == list(registry.LOSS_FORMULAS)
  assert [a.name for a in registry.ARCHITECTURES if a.batch_norm] == [
      "ResNet20", "ResNet32", "WRN16_8", "WRN28_10", "ResNet18", "ResNet50"]


def test_build_passes_the_options_as_fields():
  assert registry.build("MLP", {"mlp_depth": 3, "mlp_width": 20}, num_classes=7) == vision.MLP(
      depth=3, width=20, num_classes=7)
  assert registry.build("CNN", {"cnn_feature_multiplier": 8}, num_classes=7, activation="tanh"
                        ) == vision.CNN(num_blocks=2, layers_per_block=1, feature_multiplier=8,
                                        num_classes=7, activation="tanh")
  assert registry.build("ResNet32", num_classes=100, activation="tanh") == resnet.ResNet(
      blocks_per_stage=5, num_classes=100, activation="tanh")
  assert registry.build("WRN28_10", num_classes=10) == resnet.WideResNet(
      depth=28, widen_factor=10, num_classes=10, activation="relu")
  assert registry.build("ResNet18", {"resnet_width": 4}, num_classes=10) == resnet.ResNet18(
      width=4, num_classes=10)
  assert registry.build("ResNet50", num_classes=1000) == imagenet_resnet.ResNet50(
      num_classes=1000, activation="relu")


@pytest.mark.parametrize("name, given, match", [
    ("ResNet101", {}, "ResNet101"), ("mlp", {}, "'mlp'"),
    ("MLP", {"resnet_width": 2}, "resnet_width")])
def test_build_rejects_unknown_names_and_options(name, given, match):
  with pytest.raises(ValueError, match=match):
    registry.build(name, given, num_classes=10)


@pytest.mark.parametrize("argv, line", [
    (["--mlp_depth=1"], "--mlp_depth must be at least 2, got 1"),
    (["--nn_architecture=CNN", "--cnn_num_blocks=5"],
     "--cnn_num_blocks=5 is too deep for the 28x28 images of mnist: each block halves the size, "
     "so at most 4 blocks"),
    (["--nn_architecture=CNN", "--resnet_width=8"],
     "--resnet_width is an option of ResNet18, not of --nn_architecture=CNN"),
    (["--nn_architecture=VGG"], "--nn_architecture=VGG is not supported; use one of MLP, CNN"),
])
def test_model_flags_are_checked_through_the_registry(argv, line):
  f = ic.flag_values()
  f(["prog", *argv])
  assert any(p.startswith(line) for p in ic.problems(f)), ic.problems(f)


def test_cnn_flags_are_accepted_with_another_network_and_the_title_shows_resnet_width():
  f = ic.flag_values()
  f(["prog", "--nn_architecture=ResNet18", "--mlp_width=8", "--resnet_width=4"])
  assert not [p for p in ic.problems(f) if "width" in p]
  assert ic.TASK.title(ic.TASK.config(cli_flags.flag_values(f))) == "mnist ResNet18 (width 4)"
