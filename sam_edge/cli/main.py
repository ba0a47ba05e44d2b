"""The plumbing every command shares: parsing, one-line errors, exit codes, and the main()
skeleton of the entry points.

    python -m image_classification|transformer [--flag=value ...]     (`task_main`)
    python -m sam_edge.sweep|compare ...                               (`command`)

`--help` prints the flags and exits 0; a malformed or unknown flag, and every problem found
before the work starts, is one line `prog: error: ...` on stderr and exit code 2; an InputError
found later (in a data file) is the same. Nothing here imports jax: an entry point starts
jax.distributed (when asked) before any other jax call, then checks, then runs.
"""

import os
import sys
from typing import Callable, Optional

from absl import flags, logging

from sam_edge import errors
from sam_edge.cli import checks, compilation_cache, epochs, help_text
from sam_edge.cli import flags as cli_flags
from sam_edge.cli.flags import task_flags  # noqa: F401  (the entry points' FlagValues)
from sam_edge.tasks.task import Task

HELP = ("-h", "--help", "-help", "--helpshort", "--helpfull")
FULL_HELP = "--helpfull"


def fail(prog: str, problems: list[str], code: int = 2) -> int:
  """Prints each problem as `prog: error: problem` on stderr; returns `code`."""
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
    _print_help(f"usage: {usage or f'python -m {prog} [--flag=value ...]'}\n\n"
                + help_text.grouped(fv, full=FULL_HELP in argv[1:]))
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


def _print_help(text: str) -> None:
  """Prints the help; a reader that stops early (`--help | head`) is no error."""
  try:
    print(text, flush=True)
  except BrokenPipeError:
    os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())   # no error at exit either


def guard(prog: str, fn: Callable[[], int]) -> int:
  """Runs `fn()`; an InputError found later (e.g. in a data file) is one line and exit code 2."""
  try:
    return fn()
  except errors.InputError as e:
    return fail(prog, [str(e)])


def command(prog: str, usage: str, fv: flags.FlagValues, argv: list[str],
            body: Callable[[list[str]], int]) -> int:
  """The main() skeleton: parses `argv` (without the program name) into `fv`, then runs
  `body(positional arguments)` under `guard`; returns the exit code."""
  rest = parse_flags(fv, [prog, *argv], usage)
  return guard(prog, lambda: body(rest[1:]))


def start_devices(prog: str, f: flags.FlagValues) -> Optional[int]:
  """Starts jax.distributed when the flags or the environment ask for it (before any other jax
  call); returns exit code 2 (after one line) if that fails, else None."""
  from sam_edge.run import devices  # pylint: disable=import-outside-toplevel
  multi = (f.coordinator_address, f.num_processes, f.process_id)
  if any(x is not None for x in multi) and not all(x is not None for x in multi):
    return None                         # reported with the other problems
  try:
    line = devices.initialize(f.coordinator_address, f.num_processes, f.process_id)
  except Exception as e:                # jax raises several kinds; one line says which
    return fail(prog, [f"--coordinator_address={f.coordinator_address}: jax.distributed could "
                       f"not start: {type(e).__name__}: {' '.join(str(e).split())[:300]}"])
  if line:
    print(line, flush=True)
  return None


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
  code = start_devices(task.prog, f)
  if code is not None:
    return code
  found = problems(task, f)
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
  return command(task.prog, f"python -m {task.prog} [--flag=value ...]", fv,
                 sys.argv[1:] if argv is None else argv, body)
