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


def test_a_cold_item_has_no_behaviour_and_falls_back_to_content(warehouse, tmp_path):
    import shutil

    from pipelines import build_recs, publish

    copy = tmp_path / "warehouse"
    shutil.copytree(warehouse, copy)
    events = tmp_path / "events.csv"
    events.write_text("user_id,item_id,timestamp\n" + "".join(f"u{u},i{(u + j) % 3},{1_600_000_000 + j}\n" for u in range(6) for j in range(2)))
    items = tmp_path / "items.csv"
    items.write_text("item_id,title\ni0,Red tea mug\ni1,Blue coffee mug\ni2,Steel kettle\ni9,Green tea mug\n")
    build_recs.run(["--warehouse", str(copy), "--input-format", "contract", "--interactions", str(events), "--items", str(items)])
    publish.run(["--warehouse", str(copy), "--tables", "users,items"])
    store = Store(str(copy), FakeEncoder("all-MiniLM-L6-v2", 384))
    assert store.is_cold("i9") and not store.is_cold("i0")
    neighbours = [item_id for item_id, _ in store.similar_items("i9", 2, "content")]
    assert neighbours[0] == "i0"  # "Green tea mug" is nearest to "Red tea mug" by text
    assert "i9" not in neighbours
