import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from encoding.sentence_transformer import SentenceTransformerEncoder, model_dimension, resolve_model_path
from features.encoders import Encoder


def test_bundled_model_name_resolves_to_an_installed_folder():
    path = Path(resolve_model_path("all-MiniLM-L6-v2"))
    assert path.is_dir() and (path / "config.json").exists()


def test_other_names_pass_through_for_users_with_a_hub():
    assert resolve_model_path("org/some-other-model") == "org/some-other-model"


def test_the_dimension_is_read_from_a_local_folder_without_loading_the_model():
    assert model_dimension("all-MiniLM-L6-v2") == 384
    assert model_dimension("org/some-other-model") is None  # a hub id: only loading it can tell


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
