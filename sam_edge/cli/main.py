"""The plumbing every command shares: parsing, one-line errors, exit codes, and the main()
skeleton of the entry points.

    python -m image_classification|transformer [--flag=value ...]     (`task_main`)
    python -m sam_edge.sweep|compare ...                               (`command`)

`--help` prints the flags grouped by topic (data, model, method, measurement, loop, outputs,
devices: an entry point's flags are defined under their topic, `options.topic`), each with the
first sentence of its help, and exits 0; `--helpfull` prints all of it, the default and an
enum's choices. A command without topics (sweep, compare, ...) prints its flags in one group.

A malformed or unknown flag, and every problem found before the work starts, is one line
`prog: error: ...` on stderr and exit code 2; an InputError found later (in a data file) is the
same. Nothing here imports jax: an entry point starts jax.distributed (when asked) before any
other jax call, then checks, then runs.
"""

import os
import sys
import textwrap
from typing import Callable, Optional

from absl import flags, logging

from sam_edge import errors, options
from sam_edge.cli import checks, compilation_cache, epochs
from sam_edge.cli import flags as cli_flags
from sam_edge.cli.flags import task_flags  # noqa: F401  (the entry points' FlagValues)
from sam_edge.tasks.task import Task

HELP = ("-h", "--help", "-help", "--helpshort", "--helpfull")
WIDTH = 100
NAME_COLUMN = 34
HEADINGS = {
    "data": "Data",
    "model": "Model",
    "method": "Method: optimizer, SAM, step-size schedule",
    "measurement": "Measurement: curvature, evaluation",
    "loop": "Loop: budget, seed, checkpoints, compilation cache",
    "outputs": "Outputs",
    "devices": "Devices and precision",
}
UNGROUPED = "Flags"
LONG = 160                                  # characters of a first sentence before a `;` cut


def _cut(text: str, end: str) -> Optional[int]:
  """The index of the first `end` before a space outside parentheses, or None."""
  depth = 0
  for i, char in enumerate(text):
    depth += {"(": 1, ")": -1}.get(char, 0)
    if depth == 0 and char == end and text[i + 1:i + 2].isspace():
      return i
  return None


def first_sentence(text: str) -> str:
  """`text` up to its first `.` that ends a sentence outside parentheses (all of it if none
  does); a sentence longer than LONG is cut further at its first `;` outside parentheses, and
  ends in `; …`."""
  end = _cut(text, ".")
  sentence = text if end is None else text[:end + 1]
  if len(sentence) > LONG:
    part = _cut(sentence, ";")
    if part is not None:
      return sentence[:part] + "; …"
  return sentence


def _synopsis(flag: flags.Flag) -> str:
  """`--name=default`, `--[no]name` (default) for a bool, `--name` when the default is None."""
  if flag.boolean:
    return f"--[no]{flag.name} ({'on' if flag.default else 'off'})"
  if flag.default is None:
    return f"--{flag.name}"
  shown = flag.default_as_str                   # a string's default comes quoted: 'x'
  if len(shown) > 2 and shown[0] == shown[-1] == "'":
    shown = shown[1:-1]
  return f"--{flag.name}={shown}"


def flag_lines(flag: flags.Flag, *, full: bool) -> list[str]:
  """One flag: its synopsis (with its default), then its help (an enum's choices and the first
  sentence, or with `full` all of it) wrapped beside it, or under it after a long synopsis."""
  text = " ".join(flag.help.split())           # an enum's help starts with <its|choices>:
  text = text if full else first_sentence(text)
  synopsis = "  " + _synopsis(flag)
  body = textwrap.wrap(text, WIDTH - NAME_COLUMN, break_long_words=False, break_on_hyphens=False)
  if len(synopsis) < NAME_COLUMN - 1:
    synopsis, body = synopsis.ljust(NAME_COLUMN) + (body or [""])[0], body[1:]
  return [synopsis] + [" " * NAME_COLUMN + line for line in body]


def grouped(fv: flags.FlagValues, *, full: bool = False) -> str:
  """The help of every flag of `fv`, grouped by topic (module doc): each topic's
  flags in definition order, the flags defined under no topic last, under UNGROUPED."""
  by_topic: dict[str, list[flags.Flag]] = {}
  for name in fv:
    if name == fv[name].name:                   # not a short name
      by_topic.setdefault(options.topic_of(fv[name]) or "", []).append(fv[name])
  lines = []
  for topic in (t for t in (*options.TOPICS, "") if t in by_topic):
    lines += [f"{HEADINGS.get(topic, UNGROUPED)}:",
              *(line for flag in by_topic[topic] for line in flag_lines(flag, full=full)), ""]
  if not full:
    lines.append("--helpfull: every flag's whole help text.")
  return "\n".join(lines).rstrip("\n")


def fail(prog: str, problems: list[str], code: int = 2) -> int:
  """Prints each problem as `prog: error: problem` on stderr; returns `code` (2: bad input)."""
  for problem in problems:
    print(f"{prog}: error: {problem}", file=sys.stderr)
  return code


def parse_flags(fv: flags.FlagValues, argv: list[str], usage: Optional[str] = None
                ) -> list[str]:
  """Parses `argv` (the program first) into `fv` and returns it less the flags: --help prints
  the flags (exit 0); a malformed or unknown flag is one line on stderr and exit code 2. absl's
  own flags keep their defaults. Every command has --compilation_cache_dir, applied here, before
  jax is imported (`compilation_cache`)."""
  prog = os.path.basename(argv[0]).removesuffix(".py")
  compilation_cache.define_flag(fv)
  if any(a in HELP for a in argv[1:]):
    try:                                        # a reader that stops early (`--help | head`)
      print(f"usage: {usage or f'python -m {prog} [--flag=value ...]'}\n\n"
            + grouped(fv, full="--helpfull" in argv[1:]), flush=True)
    except BrokenPipeError:                     # is no error, at exit either
      os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    sys.exit(0)
  try:
    fv.unparse_flags()
    rest = fv(argv)
  except flags.Error as e:
    sys.exit(fail(prog, [str(e)]))
  if not flags.FLAGS.is_parsed():
    flags.FLAGS.mark_as_parsed()
  logging.set_verbosity(logging.WARNING)      # absl's app.run would log INFO from jax and TFDS
  compilation_cache.configure(fv[compilation_cache.FLAG].value, prog)
  if "jax" in sys.modules:          # imported before the flags were read (tests, benchmarks)
    compilation_cache.install()
  return rest


def guard(prog: str, fn: Callable[[], int]) -> int:
  """Runs `fn()`; an InputError found later (e.g. in a data file) is one line and exit code 2."""
  try:
    return fn()
  except errors.InputError as e:
    return fail(prog, [str(e)])


def command(prog: str, usage: Optional[str], fv: flags.FlagValues, argv: list[str],
            body: Callable[[list[str]], int]) -> int:
  """The main() skeleton: parses `argv` (without the program name) into `fv`, then runs
  `body(positional arguments)` under `guard`; returns the exit code."""
  rest = parse_flags(fv, [prog, *argv], usage)
  return guard(prog, lambda: body(rest[1:]))


def start_devices(f: flags.FlagValues) -> list[str]:
  """Starts jax.distributed when the flags or the environment ask for it (before any other jax
  call); returns the one line that says why it failed, if it did."""
  from sam_edge.run import devices  # pylint: disable=import-outside-toplevel
  multi = (f.coordinator_address, f.num_processes, f.process_id)
  if any(x is not None for x in multi) and not all(x is not None for x in multi):
    return []                           # reported with the other problems
  try:
    line = devices.initialize(f.coordinator_address, f.num_processes, f.process_id)
  except Exception as e:                # jax raises several kinds; one line says which
    return [f"--coordinator_address={f.coordinator_address}: jax.distributed could not start: "
            f"{type(e).__name__}: {' '.join(str(e).split())[:300]}"]
  if line:
    print(line, flush=True)
  return []


def problems(task: Task, f: flags.FlagValues) -> list[str]:
  """Every problem with the flags, before anything is loaded or compiled: fills in the task's
  flag-dependent defaults and the step flags of budgets in epochs (`epochs`), checks the shared
  and the task's flags, then (when those are sound) the task's input files and the --init_params
  file's header."""
  given = frozenset(name for name in f if f[name].present)
  for name, value in task.resolve_defaults(cli_flags.flag_values(f), given).items():
    setattr(f, name, value)
  in_epochs, size_known = epochs.resolve(
      f, lambda fv: task.train_examples(cli_flags.flag_values(fv)))
  values = cli_flags.flag_values(f)             # as the checks see them: every default set
  found = checks.common_problems(f, task) + task.problems(values, given)
  if found:           # an unknown size then follows from these (a bad dataset or fraction)
    return (in_epochs if size_known else []) + found
  # a corpus that cannot be read also leaves the training set's size unknown: it says why
  return (task.input_problems(values) + checks.init_params_problems(f, task.prog)) or in_epochs


def task_main(task: Task, f: flags.FlagValues) -> int:
  """An entry point's main, once its flags are parsed: jax.distributed, the checks, then the
  run (`run.experiment.run`); returns the exit code."""
  found = start_devices(f) or problems(task, f)
  if found:
    return fail(task.prog, found)
  compilation_cache.install()
  from sam_edge.cli import config  # pylint: disable=import-outside-toplevel
  from sam_edge.run import experiment  # pylint: disable=import-outside-toplevel
  run = config.of_flags(task, f)
  return guard(task.prog, lambda: experiment.run(
      run.run, lambda key: task.build(run.problem, key), dict(run.values))[1])


def entry(task: Task, fv: flags.FlagValues, argv: Optional[list[str]] = None) -> int:
  """`python -m <entry point>`: parses the command line, then `task_main`."""
  def body(rest: list[str]) -> int:
    if rest:
      return fail(task.prog, [f"unexpected arguments {rest}"])
    return task_main(task, fv)
  return command(task.prog, None, fv, sys.argv[1:] if argv is None else argv, body)
