from features.schemas import Item, QADocument
from features.text import document_text, item_text, normalize_text


def test_normalize_collapses_whitespace_and_drops_control_characters():
    assert normalize_text("  a\u0000b \n\n c\t") == "a b c"
    assert normalize_text(None) == ""


def test_normalize_composes_unicode():
    assert normalize_text("e\u0301") == "\u00e9"


def test_item_text_is_title_then_text():
    assert item_text(Item(item_id="1", title="Sleeve", text="Fits Surface")) == "Sleeve. Fits Surface"
    assert item_text(Item(item_id="1", title="Sleeve")) == "Sleeve"


def test_document_text_puts_question_before_answer():
    doc = QADocument(doc_id="d", question="How?", answer="Like  this.")
    assert document_text(doc) == "How?\nLike this."
    assert document_text(QADocument(doc_id="d", answer="Only")) == "Only"
