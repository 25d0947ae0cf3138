"""Exceptions raised at the boundaries; each names the field or row at fault."""

from __future__ import annotations


class InputError(ValueError):
    """A record of the input contract is invalid.

    Carries where the bad value came from so that a message can point a user at it.
    """

    def __init__(self, reason: str, *, field: str | None = None, row: str | None = None) -> None:
        self.reason = reason
        self.field = field
        self.row = row
        where = ", ".join(p for p in (f"row {row}" if row else "", f"field '{field}'" if field else "") if p)
        super().__init__(f"{where}: {reason}" if where else reason)


class NotFoundError(KeyError):
    """A requested id does not exist in the served tables."""

    def __str__(self) -> str:  # KeyError quotes its argument; keep the message readable
        return str(self.args[0]) if self.args else "not found"


class TableContractError(RuntimeError):
    """A Lance table does not match what the reader was configured for."""
