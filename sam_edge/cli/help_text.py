"""`--help` grouped by topic: data, model, method, measurement, loop, outputs, devices.

An entry point's flags are defined under their topic (`options.topic`); `--help` prints each
topic's flags with the first sentence of their help, `--helpfull` with all of it, the default and
an enum's choices. A command without topics (sweep, compare, ...) prints its flags in one group.
"""

import re
import textwrap
from typing import Optional

from absl import flags

from sam_edge import options

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
_SENTENCE_END = re.compile(r"\.(?=\s)")
_CLAUSE_END = re.compile(r";(?=\s)")


def _cut(text: str, pattern: re.Pattern) -> Optional[int]:
  """The index of the first match of `pattern` outside parentheses, or None."""
  depth = 0
  for i, char in enumerate(text):
    depth += {"(": 1, ")": -1}.get(char, 0)
    if depth == 0 and pattern.match(text, i):
      return i
  return None


def first_sentence(text: str) -> str:
  """`text` up to its first `.` that ends a sentence outside parentheses (all of it if none
  does); a sentence longer than LONG is cut further at its first `;` outside parentheses, and
  ends in `; …`."""
  end = _cut(text, _SENTENCE_END)
  sentence = text if end is None else text[:end + 1]
  if len(sentence) > LONG:
    part = _cut(sentence, _CLAUSE_END)
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
  """The help of every flag of `fv`, grouped by topic (see the module docstring): each topic's
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
