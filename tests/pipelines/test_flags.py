"""The one `--warehouse` flag: argparse applies features/locations.py's check, without Beam."""

import argparse
import subprocess
import sys

import pytest

from features.schemas import DEFAULT_WAREHOUSE
from pipelines.flags import add_warehouse_argument
from tests.conftest import ROOT


def test_argparse_prints_the_reason_after_the_flag(capsys):
    parser = argparse.ArgumentParser(prog="recqa x")
    add_warehouse_argument(parser)
    assert parser.parse_args([]).warehouse == DEFAULT_WAREHOUSE
    assert parser.parse_args(["--warehouse", "s3://bucket/wh"]).warehouse == "s3://bucket/wh"
    with pytest.raises(SystemExit) as caught:
        parser.parse_args(["--warehouse", "http://host/wh"])
    assert caught.value.code == 2
    assert "argument --warehouse: unsupported scheme 'http://'" in capsys.readouterr().err


def test_the_flag_imports_no_beam():
    """`recqa serve` takes --warehouse too and runs no pipeline: parsing it must not import Beam."""
    code = "import sys, pipelines.flags; print('apache_beam' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True, cwd=ROOT)
    assert result.stdout.split() == ["False"]
