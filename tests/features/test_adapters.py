import pytest

from features import adapters
from features.errors import InputError


def test_ms_store_usage_row_becomes_a_purchase():
    event = adapters.ms_store_interaction(["U1", "DQF-00358", "2015/06/09T19:39:37"], "r1")
    assert (event.user_id, event.item_id, event.event) == ("U1", "DQF-00358", "purchase")
    assert event.timestamp == 1_433_878_777.0


def test_ms_store_catalog_row_keeps_quoted_title():
    item = adapters.ms_store_item(['DAF-00281', 'GREENE + GRAY 13" Laptop Sleeve', "Accessories"], "r1")
    assert item.title == 'GREENE + GRAY 13" Laptop Sleeve'
    assert item.category == "Accessories"


def test_wrong_column_count_names_the_row():
    with pytest.raises(InputError, match="row usage.csv:3.*expected 3 columns"):
        adapters.ms_store_interaction(["U1", "I1"], "usage.csv:3")


@pytest.mark.parametrize(
    ("record", "field"),
    [
        ({"item_id": "i", "timestamp": 1}, "user_id"),
        ({"user_id": " ", "item_id": "i", "timestamp": 1}, "user_id"),
        ({"user_id": "u", "item_id": "i", "timestamp": 1, "value": -1}, "value"),
        ({"user_id": "u", "item_id": "i", "timestamp": 1, "value": "lots"}, "value"),
        ({"user_id": ["u"], "item_id": "i", "timestamp": 1}, "user_id"),
        ({"user_id": "u", "item_id": "i", "timestamp": 1, "event": "buy"}, "event"),
        ({"user_id": "u", "item_id": "i", "timestamp": "inf"}, "timestamp"),
    ],
)
def test_contract_interaction_errors_name_the_field(record, field):
    with pytest.raises(InputError) as error:
        adapters.interaction_from_mapping(record, "in.jsonl:1")
    assert error.value.field == field


def test_event_names_are_case_insensitive():
    assert adapters.interaction_from_mapping({"user_id": "u", "item_id": "i", "timestamp": 1, "event": "Click"}, "r").event == "click"


def test_contract_document_accepts_comma_separated_tags():
    doc = adapters.document_from_mapping({"doc_id": "d1", "answer": "yes", "tags": "git, markdown"}, "r")
    assert doc.tags == ("git", "markdown")
    assert doc.question is None


def test_stackfaq_gives_one_document_per_answer_and_drops_placeholder_rephrasings(stackfaq_data):
    threads = stackfaq_data["root"]["qapair"]
    documents = adapters.stackfaq_documents(stackfaq_data)
    assert len(documents) == sum(1 if isinstance(t["answer"], str) else len(t["answer"]) for t in threads)
    assert len({d.doc_id for d in documents}) == len(documents)
    assert documents[0].doc_id.startswith(adapters.stackfaq_thread_id(0))
    assert documents[0].question == threads[0]["question"]
    queries = adapters.stackfaq_queries(stackfaq_data)
    expected = sum(1 for t in threads for r in t["rephr"] if isinstance(r, str) and r.strip() not in ("", "*"))
    assert len(queries) == expected
    assert all(text != "*" for text, _ in queries)


def test_stackfaq_with_wrong_shape_is_refused():
    with pytest.raises(InputError, match="root.qapair"):
        adapters.stackfaq_documents({"qapair": []})


def test_too_long_text_is_refused_naming_the_field():
    options = adapters.ParseOptions(max_text_chars=10)
    with pytest.raises(InputError) as error:
        adapters.document_from_mapping({"doc_id": "d", "answer": "x" * 11}, "r", options)
    assert error.value.field == "answer" and "exceeds the limit of 10" in str(error.value)


def test_configured_events_replace_the_defaults():
    options = adapters.ParseOptions(events=frozenset({"play"}))
    assert adapters.interaction_from_mapping({"user_id": "u", "item_id": "i", "timestamp": 1, "event": "play"}, "r", options).event == "play"
    with pytest.raises(InputError, match="unknown event 'view'"):
        adapters.interaction_from_mapping({"user_id": "u", "item_id": "i", "timestamp": 1, "event": "view"}, "r", options)


def test_a_mapping_onto_a_column_the_contract_lacks_is_refused():
    adapters.check_mapping("items", {"title": "Name"}, "--map-items")
    with pytest.raises(InputError, match="items have no contract column 'name'; their columns: item_id, title, text, category"):
        adapters.check_mapping("items", {"name": "Name"}, "--map-items")


def test_columns_a_layout_supplies_need_no_column_but_mapped_ones_do():
    adapters.check_columns("interactions", {}, ["user_id", "item_id", "timestamp"], "usage.csv", "--map-interactions", defaults=["event"])
    with pytest.raises(InputError, match="usage.csv: no column 'kind' for event"):
        adapters.check_columns("interactions", {"event": "kind"}, ["user_id", "item_id", "timestamp"], "usage.csv", "--map-interactions")
