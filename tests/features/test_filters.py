import pytest

from features.filters import answer_condition, item_condition, sql_string


def test_quotes_are_doubled_so_values_stay_values():
    assert sql_string("' OR 1=1 --") == "''' OR 1=1 --'"
    assert sql_string("O'Brien") == "'O''Brien'"


def test_item_condition_combines_category_and_exclusions():
    assert item_condition() is None
    assert item_condition(["Gaming", "PCs"], ["i1"]) == "category IN ('Gaming', 'PCs') AND item_id NOT IN ('i1')"
    assert item_condition([]) == "false"  # an empty allow-list matches nothing


def test_answer_condition_on_source_and_tags():
    assert answer_condition(["a"], ["x", "y"]) == "source IN ('a') AND array_has_any(tags, ['x', 'y'])"


def test_nul_and_oversized_lists_are_refused():
    with pytest.raises(ValueError, match="NUL"):
        sql_string("a\x00b")
    with pytest.raises(ValueError, match="at most"):
        item_condition(["c"] * 1_001)
