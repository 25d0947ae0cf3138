"""The served versions of the three tables, as one release names them, read-only."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from features.encoders import Encoder
from features.errors import TableContractError
from features.schemas import ANSWERS_TABLE, ITEMS_TABLE, USERS_TABLE
from serving.answers import AnswerIndex, PendingAnswer
from serving.recommender import Recommender
from serving.tables import Hit


class Store(Recommender):
    """Recommendations over `users` and `items`, answers over `answers`, one published set."""

    def __init__(self, warehouse: str, encoder: Encoder, versions: Mapping[str, int]) -> None:
        import lancedb

        db = lancedb.connect(warehouse)
        tables = {}
        for name in (USERS_TABLE, ITEMS_TABLE, ANSWERS_TABLE):
            try:
                tables[name] = db.open_table(name)
            except (FileNotFoundError, ValueError) as error:
                raise TableContractError(f"warehouse '{warehouse}' has no complete set of tables: {error}") from error
            if name not in versions:
                raise TableContractError(f"the release names no version of '{name}': run `recqa publish`")
            try:
                tables[name].checkout(int(versions[name]))  # a run's versions are served only once released
            except Exception as error:  # noqa: BLE001 - lance reports a missing version in several ways
                raise TableContractError(f"table '{name}' has no version {versions[name]}: {error}") from error
        super().__init__(tables[USERS_TABLE], tables[ITEMS_TABLE], encoder)
        self._answer_index = AnswerIndex(tables[ANSWERS_TABLE], encoder)
        self.versions = {name: int(table.version) for name, table in tables.items()}

    def encode(self, text: str) -> np.ndarray:
        return self._encoder.encode([text])[0]

    def answer(self, *args, **kwargs) -> list[Hit]:
        """See AnswerIndex.answer: the answers table is searched by its own class."""
        return self._answer_index.answer(*args, **kwargs)

    def start_answer(self, *args, **kwargs) -> PendingAnswer:
        """See AnswerIndex.start: the keyword half begins while the caller encodes."""
        return self._answer_index.start(*args, **kwargs)
