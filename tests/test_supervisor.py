"""The supervisor's answer to signals: the first stops the loop, a Ctrl-C after it exits at once,
and a SIGTERM after it asks for the same stop (a parent-death signal arrives once per thread of
the dying parent, seconds apart on a loaded machine)."""

import signal

from sam_edge.run import supervisor


def _supervised(monkeypatch):
  """A supervisor with something computed whose immediate exits are recorded, not made."""
  sup = supervisor.Supervisor(err=lambda line: None)
  sup.mark_computed()
  exits = []
  monkeypatch.setattr(sup, "_exit_now", lambda reason, line: exits.append((reason, line)))
  return sup, exits


def test_a_second_ctrl_c_exits_at_once(monkeypatch):
  sup, exits = _supervised(monkeypatch)
  sup.on_signal(signal.SIGINT)
  assert sup.stop.reason == "interrupted" and not exits
  sup.on_signal(signal.SIGINT)
  assert exits == [("interrupted", exits[0][1])] and "again: exiting at once" in exits[0][1]


def test_repeated_sigterms_ask_for_one_stop_and_a_ctrl_c_still_exits(monkeypatch):
  sup, exits = _supervised(monkeypatch)
  for _ in range(4):                               # copies of a parent-death signal
    sup.on_signal(signal.SIGTERM)
  assert sup.stop.reason == "terminated" and not exits
  sup.on_signal(signal.SIGINT)
  assert len(exits) == 1 and exits[0][0] == "interrupted"


def test_a_signal_before_anything_is_computed_exits_at_once(monkeypatch):
  sup = supervisor.Supervisor(err=lambda line: None)
  exits = []
  monkeypatch.setattr(sup, "_exit_now", lambda reason, line: exits.append((reason, line)))
  sup.phase = "loading data"
  sup.on_signal(signal.SIGTERM)
  assert exits == [("terminated", "terminated while loading data: nothing computed yet, exiting")]
