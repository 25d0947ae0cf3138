import random
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


def _cost(lengths, groups, pass_cost):
    return sum(pass_cost + len(group) * max(lengths[i] for i in group) for group in groups)


def _partitions(items):
    """Every way of splitting `items` into groups (any groups, not only runs of sorted lengths)."""
    if not items:
        yield []
        return
    first, rest = items[0], items[1:]
    for partition in _partitions(rest):
        yield [[first], *partition]
        for i in range(len(partition)):
            yield [*partition[:i], [first, *partition[i]], *partition[i + 1:]]


def test_length_groups_cover_every_text_once_shortest_first_and_cost_least():
    rng = random.Random(7)
    for _ in range(150):
        lengths = [rng.choice([3, 9, 10, 12, 30, 38, 60, 256]) + rng.randrange(3) for _ in range(rng.randrange(1, 7))]
        max_rows = rng.choice([2, 3, 64])
        groups = length_groups(lengths, max_rows, pass_cost=48)
        assert sorted(i for group in groups for i in group) == list(range(len(lengths)))
        assert [lengths[i] for group in groups for i in group] == sorted(lengths)
        assert all(len(group) <= max_rows for group in groups)
        # no grouping of the texts at all, in any order, costs less
        least = min(_cost(lengths, p, 48) for p in _partitions(list(range(len(lengths)))) if all(len(g) <= max_rows for g in p))
        assert _cost(lengths, groups, 48) == least


def test_length_groups_refuse_a_pass_of_no_rows():
    with pytest.raises(ValueError, match="max_rows"):
        length_groups([3, 4], max_rows=0)


def test_length_groups_keep_short_texts_out_of_long_passes_and_close_lengths_together():
    assert [sorted(g) for g in length_groups([10] * 5 + [200] * 5, max_rows=64)] == [[0, 1, 2, 3, 4], [5, 6, 7, 8, 9]]
    assert length_groups([10, 11, 12], max_rows=64) == [[0, 1, 2]]  # a pass more costs more than two tokens of padding
    assert [len(group) for group in length_groups([20] * 7, max_rows=3)] in ([3, 3, 1], [3, 2, 2], [2, 3, 2], [2, 2, 3], [1, 3, 3], [3, 1, 3])
    assert length_groups([], max_rows=4) == []
