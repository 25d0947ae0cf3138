"""The traced graph: the eager model's vectors at any batch size and length, or no graph at all."""

import numpy as np
import pytest

from encoding.sentence_transformer import SentenceTransformerEncoder
from encoding.traced_encoder import TracedEncoder

# Shapes the trace never saw (it is traced on a batch of two short texts): one text, a long
# truncated one, non-Latin, empty, and a batch larger than one pass.
TEXTS = ["quokka", "refund " * 400, "Wie setze ich mein Passwort zurück? 🙂", "", "How do I cross out text on GitHub?"] * 15


@pytest.mark.slow
def test_the_traced_graph_encodes_what_the_eager_model_encodes_at_every_shape():
    eager = SentenceTransformerEncoder(precision="bf16").load()
    traced = TracedEncoder(eager, batch_size=32).load()
    assert traced.name == eager.name and traced.dimension == 384 and traced.precision == "bf16"
    for texts in (TEXTS[:1], TEXTS[1:2], TEXTS[:4], TEXTS):
        got, want = traced.encode(texts), eager.encode(texts)
        assert got.shape == want.shape and got.dtype == np.float32
        np.testing.assert_allclose(np.linalg.norm(got, axis=1), 1.0, atol=1e-5)
        assert float(np.min(np.sum(got * want, axis=1))) > 0.9995
    assert traced.encode([]).shape == (0, 384)
    # each text keeps its own row whatever the length-sorted batching did
    mixed = traced.encode(TEXTS[:5])
    for row, text in enumerate(TEXTS[:5]):
        assert float(mixed[row] @ traced.encode([text])[0]) > 0.9995


@pytest.mark.slow
def test_a_graph_that_disagrees_with_the_model_is_refused_naming_it(monkeypatch):
    source = SentenceTransformerEncoder(precision="bf16").load()
    rng = np.random.default_rng(0)

    def elsewhere(texts):  # what a trace that took a wrong branch looks like: unit vectors, wrong ones
        vectors = rng.normal(size=(len(texts), 384)).astype(np.float32)
        return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)

    monkeypatch.setattr(source, "encode", elsewhere)
    traced = TracedEncoder(source)
    with pytest.raises(RuntimeError, match=r"traced graph of 'all-MiniLM-L6-v2' \(bf16\) disagrees with the model"):
        traced.load()
    assert traced._graph is None  # no half-checked graph is kept


@pytest.mark.slow
def test_the_graph_meets_only_power_of_two_rows_and_bucketed_lengths_and_each_text_keeps_its_row():
    from encoding.traced_encoder import TOKEN_BUCKET

    eager = SentenceTransformerEncoder(precision="bf16").load()
    traced = TracedEncoder(eager, batch_size=32).load()
    graph, shapes = traced._graph, []

    def recording(*tensors):
        shapes.append(tuple(tensors[0].shape))
        return graph(*tensors)

    traced._graph = recording
    texts = [f"question number {i} " + "word " * (i % 9) for i in range(23)]  # 23 = 16 + 4 + 2 + 1
    got = traced.encode(texts)
    assert sorted(rows for rows, _ in shapes) == [1, 2, 4, 16]
    assert all(tokens % TOKEN_BUCKET == 0 for _, tokens in shapes)
    assert float(np.min(np.sum(got * eager.encode(texts), axis=1))) > 0.9995
