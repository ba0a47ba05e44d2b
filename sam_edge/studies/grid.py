"""From an entry point's arguments with swept axes to the list of runs, their names and shards.

An argument `--flag=v1,v2,v3` is an axis (`\\,` is a literal comma); every other argument passes
through. With axes A1..Am in the order given, the runs are

    product: every (a1, ..., am) in A1 x ... x Am, the last axis varying fastest;
    zip:     (A1[i], ..., Am[i]) for i < |A1| (every axis must have as many values).

Run i (0-based) belongs to shard I of N when i mod N = I. A run is named `flag1=value1,...` from
its swept values, percent-encoded outside `[A-Za-z0-9._+-]`: readable, a safe folder name, and
the same for the same command.
"""

import dataclasses
import hashlib
import itertools
import re
import urllib.parse
from typing import Union

from sam_edge.run.run_folder import flag_name

AGGREGATES = ("product", "zip")
MAX_NAME_BYTES = 200          # file systems allow 255; leave room for temporary suffixes
_SEPARATOR = re.compile(r"(?<!\\),")


class GridError(ValueError):
  """A sweep that cannot be expanded (one line, naming the axis)."""


@dataclasses.dataclass(frozen=True)
class Axis:
  """A swept flag and its values, as given on the command line."""
  flag: str
  values: tuple[str, ...]


@dataclasses.dataclass(frozen=True)
class RunSpec:
  """One run of a sweep: its index, folder name and entry-point arguments."""
  index: int
  name: str
  args: tuple[str, ...]                    # the run's arguments, without the sweep's outputs


def parse(args: list[str]) -> tuple[list[Axis], list[Union[str, int]]]:
  """(axes, template): the template holds each pass-through argument (`\\,` unescaped) and, in
  place of each axis argument, the axis's index."""
  axes: list[Axis] = []
  template: list[Union[str, int]] = []
  for arg in args:
    name, value = flag_name(arg), arg.partition("=")[2]
    if name is None or not _SEPARATOR.search(value):
      template.append(arg.replace("\\,", ","))
      continue
    values = tuple(v.replace("\\,", ",") for v in _SEPARATOR.split(value))
    if any(a.flag == name for a in axes):
      raise GridError(f"--{name} is swept twice; give its values once")
    if len(set(values)) < len(values):
      raise GridError(f"--{name} repeats a value: {','.join(values)}")
    template.append(len(axes))
    axes.append(Axis(name, values))
  swept = {a.flag for a in axes}
  for arg in template:
    if isinstance(arg, str) and flag_name(arg) in swept:
      raise GridError(f"--{flag_name(arg)} is both swept and given as {arg}")
  return axes, template


def combinations(axes: list[Axis], aggregate: str) -> list[tuple[str, ...]]:
  """The value tuples of the runs, in run order (see the module docstring)."""
  if aggregate not in AGGREGATES:
    raise GridError(f"--aggregate must be product or zip, got {aggregate!r}")
  if aggregate == "zip":
    lengths = {a.flag: len(a.values) for a in axes}
    if len(set(lengths.values())) > 1:
      raise GridError("--aggregate=zip needs axes of equal length, got "
                      + ", ".join(f"--{f}: {n}" for f, n in lengths.items()))
    return list(zip(*(a.values for a in axes))) if axes else [()]
  return list(itertools.product(*(a.values for a in axes)))


def run_name(values: tuple[tuple[str, str], ...]) -> str:
  """`flag=value,...` with values percent-encoded outside `[A-Za-z0-9._+-]`; `run` if no axes.
  A name longer than MAX_NAME_BYTES keeps its start, then a hash of the whole name."""
  name = ",".join(f"{flag}={urllib.parse.quote(value, safe='._+-')}" for flag, value in values)
  name = name or "run"
  if len(name) > MAX_NAME_BYTES:
    digest = hashlib.sha1(name.encode()).hexdigest()[:10]
    name = f"{name[:MAX_NAME_BYTES - 11]}~{digest}"
  return name


def expand(args: list[str], aggregate: str = "product") -> tuple[list[Axis], list[RunSpec]]:
  """The axes and the runs of `args` (each axis argument replaced by `--flag=value`)."""
  axes, template = parse(args)
  runs = []
  for index, combo in enumerate(combinations(axes, aggregate)):
    run_args = tuple(f"--{axes[a].flag}={combo[a]}" if isinstance(a, int) else a
                     for a in template)
    values = tuple((axis.flag, value) for axis, value in zip(axes, combo))
    runs.append(RunSpec(index, run_name(values), run_args))
  names = [r.name for r in runs]
  if len(set(names)) < len(names):
    raise GridError("two runs would share a folder name; make the swept values distinct")
  return axes, runs


def parse_shard(text: str) -> tuple[int, int]:
  """`I/N` -> (I, N), with 0 <= I < N."""
  match = re.fullmatch(r"\s*(\d+)\s*/\s*(\d+)\s*", text or "")
  if not match:
    raise GridError(f"--shard must be I/N (e.g. 0/4), got {text!r}")
  i, n = int(match.group(1)), int(match.group(2))
  if n < 1 or not 0 <= i < n:
    raise GridError(f"--shard={text}: need N >= 1 and 0 <= I < N")
  return i, n


def shard(runs: list[RunSpec], i: int, n: int) -> list[RunSpec]:
  """The runs of shard i of n: those whose index is i mod n."""
  return [r for r in runs if r.index % n == i]
