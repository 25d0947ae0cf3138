from features.schemas import Item, QADocument
from features.schemas import ANSWER_TEXT_COLUMN
from features.text import answer_chunks, item_text, normalize_text


def test_normalize_collapses_whitespace_and_drops_control_characters():
    assert normalize_text("  a\u0000b \n\n c\t") == "a b c"
    assert normalize_text(None) == ""


def test_normalize_composes_unicode():
    assert normalize_text("e\u0301") == "\u00e9"


def test_item_text_is_title_then_text():
    assert item_text(Item(item_id="1", title="Sleeve", text="Fits Surface")) == "Sleeve. Fits Surface"
    assert item_text(Item(item_id="1", title="Sleeve")) == "Sleeve"


def test_each_chunk_is_indexed_after_the_normalised_question():
    doc = QADocument(doc_id="d", question=" How\u0000now? ", answer="one two  three four five")
    rows = answer_chunks(doc, size=3, overlap=1)
    assert [row[ANSWER_TEXT_COLUMN] for row in rows] == ["How now?\none two three", "How now?\nthree four five"]
    assert [row["chunk_id"] for row in rows] == [0, 1] and {row["question"] for row in rows} == {doc.question}
    assert [r[ANSWER_TEXT_COLUMN] for r in answer_chunks(QADocument(doc_id="d", answer="Only"))] == ["Only"]


def test_short_text_is_one_chunk():
    from features.text import chunk_words

    assert chunk_words("a  b c", size=5, overlap=1) == ["a b c"]


def test_chunks_overlap_and_cover_every_word_once_in_order():
    from features.text import chunk_words

    words = [f"w{i}" for i in range(23)]
    chunks = chunk_words(" ".join(words), size=10, overlap=3)
    assert chunks[0].split() == words[:10]
    assert chunks[1].split()[:3] == words[7:10]
    rebuilt = chunks[0].split() + [w for c in chunks[1:] for w in c.split()[3:]]
    assert rebuilt == words
    assert all(len(c.split()) <= 10 for c in chunks)


def test_bad_chunk_sizes_are_refused():
    import pytest

    from features.text import chunk_words

    with pytest.raises(ValueError, match="overlap"):
        chunk_words("a b", size=4, overlap=4)
