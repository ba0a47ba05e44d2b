"""SAM / gradient descent on MNIST, Fashion-MNIST or CIFAR-10 with Hessian measurements.

    python -m image_classification --rho=0.1            # MLP on MNIST, full batch, SAM

Trains under a wall-clock limit, measures the top Hessian eigenvalue(s) against the SAM-edge and
2/η on a schedule, writes four PDFs and a raw pickle (see README), and prints `Test error: X`.
Importing this module only defines its flags.
"""

from absl import app, flags

from sam_edge import cli, losses
from sam_edge.models import vision as vision_models
from sam_edge.tasks import vision

FLAGS = flags.FlagValues()
cli.define_common_flags(FLAGS, step_size=0.01, batch_size=60000, time_limit_in_hours=4.0,
                        hessian_check_gap=0.25)
flags.DEFINE_string("dataset", "mnist", "mnist, fashion_mnist, cifar10, cifar100 or svhn_cropped "
                    "(from TFDS).", flag_values=FLAGS)
flags.DEFINE_string("nn_architecture", "MLP", "MLP, CNN, or a CIFAR-style residual network with "
                    "BatchNorm: ResNet20, ResNet32, WRN16_8, WRN28_10.", flag_values=FLAGS)
flags.DEFINE_integer("mlp_depth", 4, "Dense layers of the MLP, the output layer included.",
                     flag_values=FLAGS)
flags.DEFINE_integer("mlp_width", 1000, "Width of the MLP's hidden layers.", flag_values=FLAGS)
flags.DEFINE_integer("cnn_num_blocks", 2, "Blocks of the CNN (each ends in a 2x2 max-pool).",
                     flag_values=FLAGS)
flags.DEFINE_integer("cnn_layers_per_block", 1, "3x3 convolutions per CNN block.",
                     flag_values=FLAGS)
flags.DEFINE_integer("cnn_feature_multiplier", 16, "Channels of block i: 2**i times this.",
                     flag_values=FLAGS)
flags.DEFINE_integer("mini_training_set_num_batches", None,
                     "Keep only the first N batches of the training set.", flag_values=FLAGS)
flags.DEFINE_integer("mini_test_set_num_batches", None,
                     "Keep only the first N batches (of --batch_size) of the test set.",
                     flag_values=FLAGS)
flags.DEFINE_string("tfds_data_dir", None, "Where TFDS keeps prepared datasets (its default if "
                    "unset).", flag_values=FLAGS)
flags.DEFINE_string("manual_dir", None, "A folder with the dataset's original files, for offline "
                    "preparation (e.g. ../shared/data/mnist).", flag_values=FLAGS)
flags.DEFINE_enum("loss", "squared_error", list(losses.LOSSES),
                  "; ".join(f"{name}: {formula}" for name, formula in losses.FORMULAS.items())
                  + ".", flag_values=FLAGS)
flags.DEFINE_enum("augment", "none", ["none", "flip_crop"],
                  "Training-batch augmentation, on device, a pure function of (seed, step): "
                  "flip_crop is a random crop after 4-pixel zero padding of the raw image and a "
                  "horizontal flip. Measurements use the batches un-augmented.", flag_values=FLAGS)
flags.DEFINE_float("label_noise", 0.0, "Fraction p of the training labels replaced by a label "
                   "drawn uniformly among the other classes (exactly round(pN), fixed by the "
                   "seed); test labels stay clean.", flag_values=FLAGS)
flags.DEFINE_float("label_smoothing", 0.0, "s: targets (1 − s)·onehot + s/C, for every --loss.",
                   flag_values=FLAGS)
flags.DEFINE_enum("activation", "relu", list(vision_models.ACTIVATIONS),
                  "Activation of the MLP's hidden layers, the CNN's convolutions and the residual "
                  "networks.",
                  flag_values=FLAGS)

PROG = "image_classification"


RESNET_BATCH_SIZE = 128


def resolve_defaults(f) -> None:
  """The default --batch_size, 60000, means "the whole MNIST training set": full batch on any
  dataset; for the residual networks (whose BatchNorm activations of a full batch would not fit
  a device) the default is RESNET_BATCH_SIZE."""
  if not f["batch_size"].present:
    if f.nn_architecture in vision.RESIDUAL:
      f.batch_size = RESNET_BATCH_SIZE
    elif f.dataset in vision.TRAIN_SIZES:
      f.batch_size = vision.TRAIN_SIZES[f.dataset]


def problems(f) -> list[str]:
  """Every problem with the flags, before anything is loaded (one line each); first fills in the
  dataset-dependent default batch size (`resolve_defaults`)."""
  resolve_defaults(f)
  return cli.common_problems(f) + vision.problems(f)


def main(argv: list[str]) -> int:
  del argv
  code = cli.start_devices(PROG, FLAGS)
  if code is not None:
    return code
  found = problems(FLAGS)
  if found:
    return cli.fail(PROG, found)
  from sam_edge import experiment
  f = FLAGS
  settings = cli.run_settings(f, title=f"{f.dataset} {f.nn_architecture}, "
                                       f"{cli.method_title(f)}")
  return cli.main_guard(PROG, lambda: experiment.run(
      settings, lambda key: vision.build(f, key), cli.flag_values(f))[1])


def run() -> None:
  app.run(main, flags_parser=lambda argv: cli.parse_flags(FLAGS, argv))


if __name__ == "__main__":
  run()
