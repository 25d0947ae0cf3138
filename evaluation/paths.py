"""argparse types for the local inputs of `recqa evaluate`: a missing one fails at parse time.

Evaluation reads its judged data with plain `open()`, so these must be local; checking them
first saves loading the model only to fail on a typo.
"""

from __future__ import annotations

import argparse
from pathlib import Path


def existing_file(value: str) -> str:
    """`value` when it names a readable file; argparse prints the message after the flag."""
    if not Path(value).is_file():
        raise argparse.ArgumentTypeError(f"no such file: '{value}'")
    return value


def existing_dir(value: str) -> str:
    """`value` when it names a folder."""
    if not Path(value).is_dir():
        raise argparse.ArgumentTypeError(f"no such folder: '{value}'")
    return value
