"""Command-line options declared by the tables that own them.

An optimizer, a SAM variant or a curvature kind declares its flags as `Option`s beside its code;
`cli.flags` defines them with absl and `cli.checks` applies each option's `check` to the parsed
value, so that a bad value is one line `--name <reason>, got <value>`. This module imports
neither jax nor absl (`define` defines an option on absl's FlagValues it is given): declaring
options costs nothing at `--help`.
"""

import contextlib
import dataclasses
import math
from typing import Any, Callable, Iterator, Optional

Check = Callable[[Any], Optional[str]]      # value -> why it is bad ("must be > 0"), or None

# The topics --help groups an entry point's flags by, in the order it prints them.
TOPICS = ("data", "model", "method", "measurement", "loop", "outputs", "devices")
TOPIC_ATTRIBUTE = "sam_edge_topic"          # set on each absl Flag object defined under `topic`


@dataclasses.dataclass(frozen=True)
class Option:
  """One flag: `type` is bool, int, float, str or "enum" (with `choices`); by default the type of
  `default` (give it when the default is None)."""
  name: str
  default: Any
  help: str
  type: Any = None
  choices: tuple[str, ...] = ()
  check: Optional[Check] = None

  @property
  def kind(self) -> Any:
    if self.choices:
      return "enum"
    return self.type or type(self.default)

  def problem(self, value: Any) -> Optional[str]:
    """`--name <reason>, got <value>`, or None when the value passes the check."""
    if self.check is None or (value is None and self.default is None):
      return None
    reason = self.check(value)
    return f"--{self.name} {reason}, got {value}" if reason else None


def _real(x: Any) -> bool:
  return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


def interval(low: float, high: float, *, low_open: bool = False, high_open: bool = True
             ) -> Check:
  """The check x ∈ [low, high) (brackets as asked); `math.inf` for an open end."""
  left, right = "(" if low_open else "[", ")" if high_open else "]"
  shown = lambda v: "∞" if v == math.inf else ("-∞" if v == -math.inf else f"{v:g}")

  def check(x: Any) -> Optional[str]:
    ok = _real(x) and (x > low if low_open else x >= low) and (x < high if high_open else x <= high)
    return None if ok else f"must lie in {left}{shown(low)}, {shown(high)}{right}"
  return check


def positive(x: Any) -> Optional[str]:
  """x > 0 and finite."""
  return None if _real(x) and x > 0 else "must be a finite number > 0"


def non_negative(x: Any) -> Optional[str]:
  """x ≥ 0 and finite."""
  return None if _real(x) and x >= 0 else "must be a finite number >= 0"


def doc_summary(doc: Optional[str]) -> str:
  """The first paragraph of a docstring, on one line ("" for None). A formula is written once,
  in the docstring of the code that computes it, and a flag's help that states it is made from
  that docstring."""
  return " ".join((doc or "").strip().split("\n\n")[0].split())


def problems(options: tuple[Option, ...], value_of: Callable[[str], Any]) -> list[str]:
  """One line per option whose value (`value_of(name)`) fails its check."""
  found = [o.problem(value_of(o.name)) for o in options]
  return [line for line in found if line]


def settled(options: tuple[Option, ...], given: Any, owner: str, *, check: bool = True
            ) -> tuple[tuple[str, Any], ...]:
  """The values of `options` as sorted (name, value) pairs: those `given` ({name: value} or
  pairs), the defaults for the rest. ValueError names an option `owner` lacks, or (with `check`)
  every value its check refuses."""
  rest = dict(given)
  values = {o.name: rest.pop(o.name, o.default) for o in options}
  if rest:
    raise ValueError(f"{owner} has no options {sorted(rest)}")
  bad = problems(options, values.get) if check else []
  if bad:
    raise ValueError("; ".join(bad))
  return tuple(sorted(values.items()))


def unique(options: list[Option]) -> list[Option]:
  """The options in order, each name once (tables may share one, e.g. --momentum); raises
  ValueError when two different options share a name."""
  seen: dict[str, Option] = {}
  for o in options:
    if o.name in seen and seen[o.name] != o:
      raise ValueError(f"two different options are named --{o.name}")
    seen.setdefault(o.name, o)
  return list(seen.values())


@contextlib.contextmanager
def topic(flag_values: Any, name: str) -> Iterator[None]:
  """Every flag defined on `flag_values` (an absl FlagValues) inside the block belongs to the
  topic `name`, one of TOPICS: its group in `--help` (`cli.main.grouped`)."""
  if name not in TOPICS:
    raise ValueError(f"unknown topic {name!r}; one of {', '.join(TOPICS)}")
  before = set(flag_values)
  yield
  for flag_name in set(flag_values) - before:
    setattr(flag_values[flag_name], TOPIC_ATTRIBUTE, name)


def topics(**by_topic: tuple[Option, ...]) -> tuple[tuple[str, Option], ...]:
  """(topic, option) pairs of options declared by their --help topic (`TOPICS`)."""
  return tuple((name, o) for name, group in by_topic.items() for o in group)


def define(flag_values: Any, option: Option) -> None:
  """`option` as an absl flag on `flag_values`."""
  from absl import flags  # pylint: disable=import-outside-toplevel
  on = {"flag_values": flag_values}
  if option.kind == "enum":
    flags.DEFINE_enum(option.name, option.default, list(option.choices), option.help, **on)
  else:
    define = {bool: flags.DEFINE_bool, int: flags.DEFINE_integer, float: flags.DEFINE_float,
              list: flags.DEFINE_list}.get(option.kind, flags.DEFINE_string)
    define(option.name, option.default, option.help, **on)


def topic_of(flag: Any) -> Optional[str]:
  """The topic an absl Flag was defined under (`topic`), or None."""
  return getattr(flag, TOPIC_ATTRIBUTE, None)


def refuse(problems: list[str]) -> None:
  """ValueError whose message is the problems, `; `-joined, if there are any."""
  if problems:
    raise ValueError("; ".join(problems))
