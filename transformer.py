"""SAM / gradient descent on a character-level transformer (Haiku) with Hessian measurements.

    python -m transformer --rho=0.1 --training_data=tinyshakespeare.txt

Without --test_data the last 10% (--test_fraction) of the training data is held out. Unlike the
reference, --hessian_check_gap defaults to a value that measures (0.05 h); 0 (with no
--measure_every_steps) turns measurements off. Ends with `test_loss: X`. Importing this module
only defines its flags.
"""

from absl import app, flags

from sam_edge import cli, errors
from sam_edge.tasks import language

FLAGS = flags.FlagValues()
cli.define_common_flags(FLAGS, step_size=0.1, batch_size=128, time_limit_in_hours=1.0,
                        hessian_check_gap=0.05)
flags.DEFINE_string("training_data", None, "ASCII text corpus to train on (required).",
                    flag_values=FLAGS)
flags.DEFINE_string("test_data", None, "ASCII text corpus for the test loss (default: the last "
                    "--test_fraction of --training_data).", flag_values=FLAGS)
flags.DEFINE_float("test_fraction", 0.1, "Share of --training_data held out when --test_data is "
                   "not given.", flag_values=FLAGS)
flags.DEFINE_integer("num_layers", 6, "Transformer blocks.", flag_values=FLAGS)
flags.DEFINE_integer("num_heads", 8, "Attention heads.", flag_values=FLAGS)
flags.DEFINE_integer("key_size", 32, "Size of each attention head's keys.", flag_values=FLAGS)
flags.DEFINE_integer("model_size", 128, "Width of the residual stream.", flag_values=FLAGS)
flags.DEFINE_integer("sequence_length", 64, "Characters of context (windows are one longer).",
                     flag_values=FLAGS)
flags.mark_flag_as_required("training_data", flag_values=FLAGS)

PROG = "transformer"


def problems(f) -> list[str]:
  """Every problem with the flags and the corpus files, before anything is compiled (one line
  each). Reading and checking a corpus takes milliseconds."""
  found = cli.common_problems(f) + language.problems(f)
  if not found:
    try:
      language.load_windows(f, log=lambda line: None)
    except errors.InputError as e:
      found.append(str(e))
  return found


def main(argv: list[str]) -> int:
  del argv
  f = FLAGS
  code = cli.start_devices(PROG, f)
  if code is not None:
    return code
  found = problems(f)
  if found:
    return cli.fail(PROG, found)

  from sam_edge import experiment
  settings = cli.run_settings(
      f, title=f"transformer ({f.num_layers} layers, width {f.model_size}), "
               f"{cli.method_title(f)}")
  # The corpus is read inside the run, where a Ctrl-C is answered at once.
  build = lambda key: language.build(f, key, *language.load_windows(f))
  return cli.main_guard(PROG, lambda: experiment.run(settings, build, cli.flag_values(f))[1])


def run() -> None:
  app.run(main, flags_parser=lambda argv: cli.parse_flags(FLAGS, argv))


if __name__ == "__main__":
  run()
