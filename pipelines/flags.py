"""The `--warehouse` flag every command takes: one default, one scheme check.

Apart from options.py so that commands running no pipeline (`recqa serve`) parse it without
importing Beam; the check itself is pure (features/locations.py), so the service applies the
same one to RECQA_WAREHOUSE.
"""

from __future__ import annotations

import argparse

from features.errors import InputError
from features.locations import check_warehouse
from features.schemas import DEFAULT_WAREHOUSE


def warehouse_argument(uri: str) -> str:
    """argparse `type=` for --warehouse: argparse prints the message after the flag's name."""
    try:
        return check_warehouse(uri)
    except InputError as error:
        raise argparse.ArgumentTypeError(error.reason) from error


def add_warehouse_argument(parser: argparse.ArgumentParser, help: str = "where Lance tables live (path or URI)") -> None:
    """The one `--warehouse` flag every command takes: same default, same scheme check."""
    parser.add_argument("--warehouse", default=DEFAULT_WAREHOUSE, type=warehouse_argument, help=help)
