"""Warehouse locations: which URIs Lance can open, checked before a command does any work.

A typo such as `s4://bucket` or `http://host/warehouse` would otherwise surface minutes later
as an object-store error deep inside a Beam worker or the service's start-up. The argparse
flag that applies this check is pipelines/flags.py.
"""

from __future__ import annotations

import re

from features.errors import InputError

# What recqa's Lance reads and writes reach: a local path (no scheme), and these URI schemes.
SUPPORTED_SCHEMES = ("file", "s3", "gs", "az", "memory")
_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.\-]*)://")


def warehouse_scheme(uri: str) -> str | None:
    """The URI scheme, lower-cased, or None for a local path."""
    match = _SCHEME.match(uri)
    return match.group(1).lower() if match else None


def check_warehouse(uri: str, flag: str = "--warehouse") -> str:
    """`uri` unchanged when Lance can open it; else InputError naming the flag and the supported schemes."""
    supported = "a local path or " + ", ".join(f"{s}://" for s in SUPPORTED_SCHEMES)
    if not uri.strip():
        raise InputError(f"empty; expected {supported}", field=flag)
    scheme = warehouse_scheme(uri)
    if scheme is not None and scheme not in SUPPORTED_SCHEMES:
        raise InputError(f"unsupported scheme '{scheme}://' in '{uri}'; expected {supported}", field=flag)
    if scheme is not None and not uri[len(scheme) + 3 :].strip("/"):
        raise InputError(f"'{uri}' names no bucket or folder", field=flag)
    return uri
