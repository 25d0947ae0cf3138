"""build-qa on the bundled StackFAQ data."""

import lance
import lancedb
import numpy as np

from features.adapters import stackfaq_documents
from features.schemas import ANSWERS_TABLE, META_DIMENSION, META_ENCODER


def test_every_answer_is_chunked_into_rows_with_normalised_vectors(warehouse, stackfaq_data):
    from features.text import chunk_words

    table = lance.dataset(str(warehouse / f"{ANSWERS_TABLE}.lance")).to_table()
    expected = {d.doc_id: d for d in stackfaq_documents(stackfaq_data)}
    keys = list(zip(table.column("doc_id").to_pylist(), table.column("chunk_id").to_pylist()))
    assert sorted(keys) == sorted((d, c) for d, doc in expected.items() for c in range(len(chunk_words(doc.answer))))
    assert len(keys) > len(expected)  # some StackFAQ answers are longer than one chunk
    vectors = np.stack(table.column("vector").to_numpy(zero_copy_only=False))
    assert vectors.shape == (table.num_rows, 384)
    assert np.isfinite(vectors).all()
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-4)
    row = table.slice(0, 1).to_pylist()[0]
    assert row["answer"] == expected[row["doc_id"]].answer
    assert table.schema.metadata[META_ENCODER] == b"all-MiniLM-L6-v2"
    assert table.schema.metadata[META_DIMENSION] == b"384"


def test_full_text_index_finds_a_keyword(fake_warehouse):
    table = lancedb.connect(str(fake_warehouse)).open_table(ANSWERS_TABLE)
    assert any(index.index_type == "FTS" for index in table.list_indices())
    hits = table.search("strikethrough", query_type="fts").limit(5).select(["doc_id", "text"]).to_arrow()
    assert hits.num_rows > 0
    assert all("strikethrough" in text.lower() for text in hits.column("text").to_pylist())


def test_the_full_text_and_fusion_flags_default_to_todays_behaviour():
    from features.retrieval import BM25_WEIGHT
    from features.schemas import ANSWER_FTS, FTSConfig
    from pipelines.build_qa import fts_config, parse_args

    args, _ = parse_args([])
    assert (fts_config(args), args.bm25_weight) == (ANSWER_FTS, BM25_WEIGHT)
    args, rest = parse_args(["--no-fts-stem", "--no-fts-stop-words", "--bm25-weight", "0.01"])
    assert (fts_config(args), args.bm25_weight, rest) == (FTSConfig(stem=False, remove_stop_words=False), 0.01, [])
