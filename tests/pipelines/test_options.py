"""Command-line flags: a flag no command and no Beam knows fails at once, naming its close match."""

from __future__ import annotations

import pytest
from apache_beam.io.filesystems import FileSystems
from apache_beam.options.pipeline_options import S3Options

from evaluation import evaluate_qa, evaluate_recs
from features.errors import InputError
from pipelines import build_qa, build_recs, listing, publish, validate
from pipelines.options import refuse_unknown, unknown_flags
from tests.conftest import MS_CATALOG, MS_USAGE

BEAM_FLAGS = ["--runner=FlinkRunner", "--flink_master=host:8081", "--direct_num_workers", "2", "--environment_type=LOOPBACK"]

# every command that takes flags -> its entry point (what cli.main calls with the words after the command)
COMMANDS = {
    "build-recs": build_recs.run,
    "build-qa": build_qa.run,
    "validate recs": lambda argv: validate.run(["recs", *argv]),
    "validate qa": lambda argv: validate.run(["qa", *argv]),
    "evaluate recs": evaluate_recs.run,
    "evaluate qa": evaluate_qa.run,
    "publish": lambda argv: publish.run(["--candidate", "recs-20260101T000000-abcdef", *argv]),
    "rollback": publish.rollback,
    "await-service": publish.await_service,
    "releases": listing.releases,
    "candidates": listing.candidates,
}
NO_PIPELINE = ["evaluate recs", "evaluate qa", "publish", "rollback", "await-service", "releases", "candidates"]


def test_beam_options_are_known_and_a_typo_is_not():
    assert unknown_flags(BEAM_FLAGS) == []
    assert unknown_flags(["--halflife-days", "30", *BEAM_FLAGS]) == ["--halflife-days", "30"]


def test_a_build_passes_beam_flags_through_and_keeps_its_own():
    args, rest = build_recs.parse_args(["--factors", "7", *BEAM_FLAGS])
    assert args.factors == 7 and rest == BEAM_FLAGS


@pytest.mark.parametrize(
    ("argv", "named", "suggested"),
    [
        (["--halflife-days", "30"], "--halflife-days", "--half-life-days"),
        (["--fctors=3"], "--fctors", "--factors"),
        (["--flink-master", "host:8081"], "--flink-master", "--flink_master"),  # Beam's flags are suggested too
    ],
)
def test_a_typo_in_a_build_flag_names_it_and_its_close_match(argv, named, suggested):
    with pytest.raises(InputError, match=f"unknown flag {named} \\(did you mean {suggested}\\?\\)"):
        build_recs.parse_args(argv)


def test_a_flag_nothing_resembles_is_named_without_a_guess():
    with pytest.raises(InputError) as raised:
        build_qa.parse_args(["--zzzz"])
    assert "unknown flag --zzzz;" in str(raised.value) and "did you mean" not in str(raised.value)


def test_a_stray_value_is_refused():
    with pytest.raises(InputError, match="unexpected argument '4'"):
        build_qa.parse_args(["--chunk-words", "3", "4"])


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_every_command_refuses_a_typo_before_any_work(command, tmp_path):
    with pytest.raises(InputError, match=r"unknown flag --warehuse \(did you mean --warehouse\?\)"):
        COMMANDS[command](["--warehuse", str(tmp_path / "wh")])
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("command", NO_PIPELINE)
def test_commands_that_run_no_pipeline_refuse_beam_flags(command, tmp_path):
    with pytest.raises(InputError, match=f"--runner is an Apache Beam flag, but recqa {command} runs no Beam pipeline"):
        COMMANDS[command](["--warehouse", str(tmp_path), "--runner=FlinkRunner"])


def test_a_wrapping_commands_flags_are_suggested():
    with pytest.raises(InputError, match=r"did you mean --trials\?"):
        refuse_unknown(["--trails", "3"], "recqa tune recs", ["--trials", "--out"], beam=True)


def test_validate_sets_the_file_systems_options_from_beam_flags():
    before = getattr(FileSystems, "_pipeline_options", None)
    try:
        validate.run(["recs", "--interactions", str(MS_USAGE), "--items", str(MS_CATALOG), "--s3_endpoint_url=http://127.0.0.1:9"])
        assert FileSystems._pipeline_options.view_as(S3Options).s3_endpoint_url == "http://127.0.0.1:9"
    finally:
        FileSystems._pipeline_options = before
