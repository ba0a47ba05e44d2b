"""The model choices the flags offer by name (`models.catalog`, no jax) are exactly those the
models implement."""

from sam_edge.models import catalog, losses, resnet, vision


def test_catalog_names_are_implemented():
  assert tuple(vision.ACTIVATIONS) == catalog.ACTIVATIONS
  assert tuple(resnet.RESNETS) == catalog.RESIDUAL
  assert vision.ARCHITECTURES == catalog.ARCHITECTURES
  assert list(losses.LOSSES) == list(catalog.LOSS_FORMULAS)
