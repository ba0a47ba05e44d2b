"""The model choices by name, for flags and checks that must not import jax or flax: the image
architectures, the activations and the losses (with their formulas). `vision`, `resnet` and
`losses` implement exactly these names (tests/test_models_catalog.py checks it)."""

ARCHITECTURES = ("MLP", "CNN")                                   # vision.make_model
RESIDUAL = ("ResNet20", "ResNet32", "WRN16_8", "WRN28_10",       # resnet.RESNETS, with BatchNorm
            "ResNet18")
WIDTHED = ("ResNet18",)                                          # resnet.WIDTHED: --resnet_width
ACTIVATIONS = ("relu", "tanh", "elu", "gelu", "softplus")        # vision.ACTIVATIONS

LOSS_FORMULAS: dict[str, str] = {                                # losses.LOSSES
    "squared_error": "mean over all B×C entries of (logit − onehot)² (the reference's)",
    "sum_squared_error": "mean over examples of Σ_classes (logit − onehot)² (C × squared_error)",
    "half_sum_squared_error": "mean over examples of ½ Σ_classes (logit − onehot)² (Cohen et al.)",
    "cross_entropy": "mean over examples of −log softmax(logits)[label]",
}
