import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from encoding.sentence_transformer import SentenceTransformerEncoder, length_groups, resolve_model_path
from features.encoders import Encoder


def test_bundled_model_name_resolves_to_an_installed_folder():
    path = Path(resolve_model_path("all-MiniLM-L6-v2"))
    assert path.is_dir() and (path / "config.json").exists()


def test_other_names_pass_through_for_users_with_a_hub():
    assert resolve_model_path("org/some-other-model") == "org/some-other-model"


def test_importing_and_constructing_the_encoder_does_not_import_the_model_library():
    code = (
        "import sys; from encoding.sentence_transformer import SentenceTransformerEncoder; "
        "SentenceTransformerEncoder(); print('sentence_transformers' in sys.modules, 'torch' in sys.modules)"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    assert result.stdout.split() == ["False", "False"]


@pytest.mark.slow
def test_real_model_gives_normalised_vectors_closer_for_paraphrases():
    encoder = SentenceTransformerEncoder().load()
    assert isinstance(encoder, Encoder)  # on Python 3.11 the check reads `dimension`, which loads the model
    vectors = encoder.encode(["How do I cross out text?", "Strikethrough text formatting", "Best pizza in Naples"])
    assert vectors.shape == (3, encoder.dimension) == (3, 384)
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    assert vectors[0] @ vectors[1] > vectors[0] @ vectors[2]
    assert encoder.encode([]).shape == (0, 384)


def test_an_unknown_precision_or_device_is_refused_naming_the_choices():
    with pytest.raises(ValueError, match=r"precision='fp16' is not one of \('fp32', 'bf16'\)"):
        SentenceTransformerEncoder(precision="fp16")
    with pytest.raises(ValueError, match=r"device='mps' is not one of \('cpu', 'cuda'\)"):
        SentenceTransformerEncoder(device="mps")


@pytest.mark.slow
def test_bf16_weights_give_unit_float32_vectors_close_to_fp32():
    texts = ["How do I cross out text?", "refund " * 400, "Wie setze ich mein Passwort zurück?", ""]
    fp32 = SentenceTransformerEncoder().encode(texts)
    bf16_encoder = SentenceTransformerEncoder(precision="bf16")
    bf16 = bf16_encoder.encode(texts)
    assert str(next(bf16_encoder._model.parameters()).dtype) == "torch.bfloat16"  # the weights really are bf16
    assert bf16.dtype == np.float32 and bf16.shape == fp32.shape
    np.testing.assert_allclose(np.linalg.norm(bf16, axis=1), 1.0, atol=1e-5)
    cosine = np.sum(bf16 * fp32, axis=1)
    assert cosine.min() > 0.999 and not np.array_equal(bf16, fp32)


@pytest.mark.slow
@pytest.mark.skipif(not __import__("torch").cuda.is_available(), reason="needs a CUDA GPU (none here)")
def test_cuda_encodes_what_the_cpu_encodes():
    texts = ["How do I cross out text?", "Best pizza in Naples"]
    cpu = SentenceTransformerEncoder().encode(texts)
    cuda = SentenceTransformerEncoder(device="cuda").encode(texts)
    assert float(np.min(np.sum(cpu * cuda, axis=1))) > 0.9999


def test_length_groups_cover_every_text_once_and_pad_at_most_the_ratio():
    lengths = [9, 38, 12, 10, 30, 11, 25, 9, 60, 14, 13, 0, 1]
    groups = length_groups(lengths, max_rows=3, max_ratio=1.25)
    assert sorted(i for group in groups for i in group) == list(range(len(lengths)))
    for group in groups:
        assert len(group) <= 3
        assert max(lengths[i] for i in group) <= 1.25 * max(min(lengths[i] for i in group), 1)
    flat = [lengths[i] for group in groups for i in group]
    assert flat == sorted(lengths)  # shortest first, group after group
    # similar lengths share a pass: 9, 9, 10 (at most 3 rows), then 11, 12, 13
    assert [[lengths[i] for i in group] for group in groups[1:3]] == [[9, 9, 10], [11, 12, 13]]


def test_length_groups_of_equal_lengths_fill_passes_and_of_none_make_none():
    assert [len(group) for group in length_groups([20] * 7, max_rows=3)] == [3, 3, 1]
    assert length_groups([], max_rows=4) == []
