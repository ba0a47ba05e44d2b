"""The supervisor's answer to signals: the first stops the loop, a second exits at once, and
copies of one delivery (a parent-death signal arrives more than once) count as one."""

import signal

import pytest

from sam_edge.run import supervisor


@pytest.fixture
def clock(monkeypatch):
  """A settable time.monotonic for the supervisor module."""
  now = [100.0]
  monkeypatch.setattr(supervisor.time, "monotonic", lambda: now[0])
  return now


def _supervised(monkeypatch):
  """A supervisor with something computed whose immediate exits are recorded, not made."""
  sup = supervisor.Supervisor(err=lambda line: None)
  sup.mark_computed()
  exits = []
  monkeypatch.setattr(sup, "_exit_now", lambda reason, line: exits.append((reason, line)))
  return sup, exits


def test_a_second_signal_exits_at_once_and_a_quick_copy_does_not(monkeypatch, clock):
  sup, exits = _supervised(monkeypatch)
  sup.on_signal(signal.SIGTERM)
  assert sup.stop.reason == "terminated" and not exits
  clock[0] += supervisor.REPEAT_S / 2              # a copy of the same delivery
  sup.on_signal(signal.SIGTERM)
  assert not exits
  clock[0] += 1.0                                  # a second signal of the user's
  sup.on_signal(signal.SIGTERM)
  assert exits and exits[0][0] == "terminated" and "again: exiting at once" in exits[0][1]


def test_copies_of_a_parent_death_signal_seconds_apart_count_once(monkeypatch, clock):
  sup, exits = _supervised(monkeypatch)
  parent = supervisor.os.getppid()
  monkeypatch.setattr(supervisor.os, "getppid", lambda: parent + 1)   # the parent died
  sup.on_signal(signal.SIGTERM)
  clock[0] += 2.0                                  # a copy handled late on a loaded machine
  sup.on_signal(signal.SIGTERM)
  assert sup.stop.reason == "terminated" and not exits
  clock[0] += supervisor.ORPHAN_REPEAT_S + 0.1     # a real second signal, later
  sup.on_signal(signal.SIGTERM)
  assert len(exits) == 1
