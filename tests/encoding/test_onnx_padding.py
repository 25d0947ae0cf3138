"""The ONNX encoder tokenizes a call once and pads each pass of it later: what it feeds the graph
must be what the model's own tokenizer gives for the same texts padded together, on either
padding side (a wrong pad value is invisible in the vectors of a model that masks padding, so
it is checked on the inputs)."""

import numpy as np
import pytest
from transformers import AutoTokenizer

from encoding.onnx_encoder import OnnxEncoder
from encoding.sentence_transformer import SentenceTransformerEncoder, resolve_model_path

TEXTS = ["kettle", "How do I cross out text in a document?", "word " * 300, ""]


class RecordingSession:
    """Stands in for the ONNX Runtime session: keeps what it is fed, answers zeros."""

    def __init__(self) -> None:
        self.feeds: list[dict[str, np.ndarray]] = []

    def run(self, _outputs, feed):
        self.feeds.append(feed)
        return [np.zeros((len(next(iter(feed.values()))), 384), np.float32)]


@pytest.mark.parametrize("side", ["right", "left"])
def test_each_pass_is_fed_what_the_tokenizer_pads(side):
    tokenizer = AutoTokenizer.from_pretrained(resolve_model_path("all-MiniLM-L6-v2"))
    tokenizer.padding_side = side
    encoder = OnnxEncoder(SentenceTransformerEncoder())
    encoder._tokenizer, encoder._max_length, encoder._session = tokenizer, 256, RecordingSession()
    encoder._inputs = ["input_ids", "attention_mask", "token_type_ids"]
    rows = [2, 0, 3]
    encoder._run(encoder._tokenize(TEXTS), rows)
    expected = tokenizer([TEXTS[i] for i in rows], padding=True, truncation=True, max_length=256, return_tensors="np")
    (fed,) = encoder._session.feeds
    assert set(fed) == set(encoder._inputs)
    for name in encoder._inputs:
        np.testing.assert_array_equal(fed[name], expected[name].astype(np.int64), err_msg=f"{name}, padded on the {side}")
