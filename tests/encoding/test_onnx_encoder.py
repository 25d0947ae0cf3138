"""The ONNX export of the model gives the model's own vectors, in the order asked."""

import numpy as np
import pytest

from encoding.sentence_transformer import SentenceTransformerEncoder
from encoding.onnx_encoder import OnnxEncoder

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def encoders():
    model = SentenceTransformerEncoder().load()
    return model, OnnxEncoder(model, batch_size=4, wide_threads=2).load()


def test_onnx_vectors_match_the_model_on_varied_texts(encoders):
    model, onnx = encoders
    texts = ["How do I cross out text?", "kettle", "word " * 500, "", "Größe ändern 🙂 \t\x07", "SELECT * FROM t; --"]
    cosine = np.sum(onnx.encode(texts) * model.encode(texts), axis=1)
    assert cosine.min() > 0.9999
    assert onnx.dimension == model.dimension == 384
    assert onnx.encode([]).shape == (0, 384)


def test_batches_grouped_by_length_come_back_in_the_order_asked(encoders):
    _, onnx = encoders
    texts = [f"question {i} " + "filler " * (i * 7 % 23) for i in range(11)]  # several batches of 4, mixed lengths
    together = onnx.encode(texts)
    alone = np.vstack([onnx.encode([text]) for text in texts])
    np.testing.assert_allclose(together, alone, atol=1e-5)


def test_texts_of_very_different_lengths_go_through_in_passes_that_pad_little(encoders, monkeypatch):
    _, onnx = encoders  # at most 4 texts a pass
    texts = ["word " * 110, "kettle", "Where is my order?", "word " * 100, "tea", "How do I cross out text?", "pen",
             "How do I reset my password?", "word " * 120]
    passes = []
    original = onnx._run
    monkeypatch.setattr(onnx, "_run", lambda tokens, rows: passes.append([texts[i] for i in rows]) or original(tokens, rows))
    together = onnx.encode(texts)
    tokens = {text: len(onnx._tokenizer(text)["input_ids"]) for text in texts}
    assert sorted(text for batch in passes for text in batch) == sorted(texts)
    for batch in passes:  # no short text padded to a long one's length (sorted by characters, batches of 4 mixed them)
        assert max(tokens[t] for t in batch) <= 4 * min(tokens[t] for t in batch)
        assert len(batch) <= 4
    monkeypatch.undo()
    alone = np.vstack([onnx.encode([text]) for text in texts])
    np.testing.assert_allclose(together, alone, atol=1e-5)


def test_the_wide_session_gives_the_same_vectors_on_more_threads(encoders):
    _, onnx = encoders
    texts = ["How do I cross out text?", "kettle", "word " * 300, ""]
    wide = onnx.wide
    assert wide is not None and (wide.name, wide.dimension) == (onnx.name, onnx.dimension)
    options = wide._session.get_session_options()
    assert options.intra_op_num_threads == 2 and options.get_session_config_entry("session.force_spinning_stop") == "1"
    np.testing.assert_allclose(wide.encode(texts), onnx.encode(texts), atol=1e-5)


def test_an_export_that_disagrees_with_the_model_is_refused(encoders, monkeypatch):
    model, _ = encoders
    import encoding.onnx_encoder as module

    monkeypatch.setattr(module, "PARITY_MIN_COSINE", 1.01)  # no export can pass this
    with pytest.raises(RuntimeError, match="disagrees"):
        OnnxEncoder(model).load()
