"""Every flag of every batch command says its default in `--help` (or that it is required)."""

from __future__ import annotations

import argparse

import pytest

from cli import main
from evaluation import evaluate_qa, evaluate_recs, tune_qa, tune_recs
from pipelines import build_qa, build_recs, ingest, listing, publish, purge

# command -> its parser (`validate recs|qa` parses with the build's)
PARSERS = {
    "build-recs": build_recs.arg_parser,
    "build-qa": build_qa.arg_parser,
    "tune recs": tune_recs._parser,
    "tune qa": tune_qa._parser,
    "evaluate recs": evaluate_recs._parser,
    "evaluate qa": evaluate_qa._parser,
    "publish": publish.publish_parser,
    "rollback": publish.rollback_parser,
    "await-service": publish.await_parser,
    "releases": listing.releases_parser,
    "candidates": listing.candidates_parser,
    "upsert": ingest.upsert_parser,
    "ingest-events": ingest.ingest_events_parser,
    "delete": ingest.delete_parser,
    "purge": purge.purge_parser,
}


def _flags(parser: argparse.ArgumentParser) -> list[argparse.Action]:
    return [a for a in parser._actions if a.option_strings and not isinstance(a, argparse._HelpAction)]


def test_every_batch_command_is_walked():
    commands = {*main.JOBS, *(f"evaluate {kind}" for kind in main.EVALUATIONS), *(f"tune {kind}" for kind in main.TUNINGS)}
    assert commands - {"validate"} == set(PARSERS)


@pytest.mark.parametrize("command", sorted(PARSERS))
def test_every_flag_says_its_default_or_that_it_is_required(command):
    parser = PARSERS[command]()
    formatter = parser._get_formatter()
    for action in _flags(parser):
        assert action.help, f"{command} {action.option_strings[0]} has no help: --help would print nothing for it"
        text = formatter._expand_help(action)  # as --help prints it
        if action.required:
            assert "required" in text, f"{command} {action.option_strings[0]}: {text!r}"
            continue
        assert "default" in text.lower(), f"{command} {action.option_strings[0]}: {text!r}"
        if isinstance(action.default, (int, float, str)) and not isinstance(action.default, bool) and action.default != "":
            assert str(action.default) in text, f"{command} {action.option_strings[0]}: {text!r} lacks {action.default!r}"


def test_the_formatter_adds_a_default_only_where_the_help_lacks_one():
    parser = PARSERS["build-recs"]()
    formatter = parser._get_formatter()
    by_flag = {a.option_strings[0]: formatter._expand_help(a) for a in _flags(parser)}
    assert by_flag["--factors"].endswith(f"(default: {build_recs.ALSConfig().factors})")
    assert by_flag["--max-reject-fraction"].count("default") == 1  # says it in its own words already
    assert by_flag["--map"].count("default") == 1
    printed = " ".join(parser.format_help().split())  # argparse wraps lines
    assert f"(default: {build_recs.ALSConfig().factors})" in printed and f"--map-items COLUMN=SOURCE as --map" in printed
