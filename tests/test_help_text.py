"""`--help` grouped by topic (`cli.main`), `--helpfull` with every flag's whole text."""

import pytest

import image_classification
import transformer
from sam_edge import options
from sam_edge.cli import main as cli
from sam_edge.optim import sam
from sam_edge.optim.variants import fisher


@pytest.mark.parametrize("entry", [image_classification, transformer])
def test_every_flag_of_an_entry_point_has_a_topic(entry):
  fv = entry.flag_values()
  untagged = [name for name in fv if options.topic_of(fv[name]) is None]
  assert not untagged, f"flags defined under no topic (options.topic): {untagged}"
  topics = {options.topic_of(fv[name]) for name in fv}
  assert topics == set(options.TOPICS)


def _help(entry, flag: str, capsys) -> str:
  with pytest.raises(SystemExit) as stop:
    cli.parse_flags(entry.flag_values(), [entry.PROG, flag])
  assert stop.value.code == 0
  return capsys.readouterr().out


def test_help_lists_every_flag_under_the_topics_in_order(capsys):
  out = _help(image_classification, "--help", capsys)
  headings = [cli.HEADINGS[t] + ":" for t in options.TOPICS]
  positions = [out.index("\n" + h + "\n") for h in headings]
  assert positions == sorted(positions), "topics out of order"
  assert cli.UNGROUPED + ":" not in out
  for name in image_classification.flag_values():
    assert f"--{name}" in out or f"--[no]{name}" in out, name
  data = out[positions[0]:positions[1]]
  assert "--dataset=mnist" in data and "--rho" not in data
  method = out[positions[2]:positions[3]]
  assert "--rho=0.0" in method and "--asam_xi=0.01" in method and "--measure_trace" not in method


def test_helpfull_keeps_every_word_of_every_help(capsys):
  short = _help(image_classification, "--help", capsys)
  full = _help(image_classification, "--helpfull", capsys)
  fv = image_classification.flag_values()
  words = " ".join(full.split())
  for name in fv:
    assert " ".join(fv[name].help.split()) in words, name
  assert len(full) > len(short)
  # the short help keeps each help's first sentence only
  sam_help = " ".join(fv["sam"].help.split())
  assert sam_help not in " ".join(short.split())


def test_first_sentence_ends_outside_parentheses():
  assert cli.first_sentence("Step size η (e.g. 0.1 or 1). More words.") == \
      "Step size η (e.g. 0.1 or 1)."
  assert cli.first_sentence("No full stop here") == "No full stop here"
  assert cli.first_sentence("Version 1.5 of it. Then") == "Version 1.5 of it."


def test_a_command_without_topics_prints_one_group(capsys):
  from sam_edge import sweep  # pylint: disable=import-outside-toplevel
  out = _help(sweep, "--help", capsys)
  assert out.count(cli.UNGROUPED + ":") == 1 and "--aggregate=product" in out


def test_a_long_first_sentence_is_cut_at_its_first_clause():
  long = "Variant (a; b): first (x; y); " + "second clause " * 20 + "end. Next."
  assert cli.first_sentence(long) == "Variant (a; b): first (x; y); …"
  assert cli.first_sentence("Radius ρ; 0 is none. More.") == "Radius ρ; 0 is none."


def test_a_formula_s_help_is_the_first_paragraph_of_the_docstring_that_states_it():
  """`options.doc_summary`: a help states a formula by quoting the one docstring that has it."""
  doc = "ε = ρ g,\n  d = ∇L(w + ε).\n\nEdge: none."
  assert options.doc_summary(doc) == "ε = ρ g, d = ∇L(w + ε)."
  assert options.doc_summary(None) == ""
  assert fisher.VARIANT.formula == options.doc_summary(fisher.__doc__)
  assert f"fisher ({fisher.VARIANT.formula.rstrip('.')})" in sam.help_text()
