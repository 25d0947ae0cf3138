"""The Store refuses tables it cannot serve correctly."""

import numpy as np
import pytest

from features.errors import TableContractError
from features.schemas import META_ALS, USERS_TABLE
from pipelines import lance_io
from serving.store import Store


class FakeEncoder:
    """Deterministic stand-in: no model, a fixed name and dimension."""

    def __init__(self, name: str, dimension: int) -> None:
        self.name = name
        self._dimension = dimension

    @property
    def dimension(self) -> int:
        return self._dimension

    def encode(self, texts: list[str]) -> np.ndarray:
        return np.ones((len(texts), self._dimension), dtype=np.float32) / np.sqrt(self._dimension)


@pytest.mark.parametrize(("name", "dimension"), [("other-model", 384), ("all-MiniLM-L6-v2", 768)])
def test_tables_of_another_encoder_are_refused(warehouse, name, dimension):
    with pytest.raises(TableContractError, match="embedded by 'all-MiniLM-L6-v2' \\(384 dims\\)"):
        Store(str(warehouse), FakeEncoder(name, dimension))


def test_users_and_items_of_different_fits_are_refused(warehouse, tmp_path):
    import shutil

    import lance

    copy = tmp_path / "warehouse"
    shutil.copytree(warehouse, copy)
    users = lance.dataset(str(copy / f"{USERS_TABLE}.lance")).to_table()
    lance_io.write_table(str(copy), USERS_TABLE, users, {META_ALS: b'{"factors": 32, "random_state": 1}'})
    lance_io.publish_table(str(copy), USERS_TABLE)
    with pytest.raises(TableContractError, match="different ALS fits"):
        Store(str(copy), FakeEncoder("all-MiniLM-L6-v2", 384))


def test_missing_tables_are_named(tmp_path):
    with pytest.raises(TableContractError, match="no complete set of tables"):
        Store(str(tmp_path), FakeEncoder("all-MiniLM-L6-v2", 384))
