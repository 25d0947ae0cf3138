"""The fast suite (`pytest -m "not slow"`) loads no model: tests that need it are slow, others are refused it."""

from __future__ import annotations

import pytest

from encoding.sentence_transformer import SentenceTransformerEncoder
from tests import conftest


def test_loading_the_real_model_outside_a_slow_test_fails_naming_the_test_and_the_fix(request):
    with pytest.raises(AssertionError) as refused:
        SentenceTransformerEncoder("all-MiniLM-L6-v2").load()
    message = str(refused.value)
    assert request.node.nodeid in message and "all-MiniLM-L6-v2" in message
    assert "@pytest.mark.slow" in message and "fake_model" in message


def test_every_collected_test_that_uses_a_real_model_fixture_is_slow(request):
    items = request.session.items
    assert request.node in items
    assert all(item.get_closest_marker("slow") for item in items if conftest._uses_real_model(item))

