"""BM25 in process, scored as Lance's full-text index scores: the served table's rows
(`CorpusBM25`) and the answer chunks written since the last build (`PostingsBM25`).

Tokens are what Lance's index makes of a text (`Analyzer`; by default LanceDB's `FTS()`
defaults, which build-qa uses): alphanumeric runs (its `simple` tokenizer), those of 40 bytes
or more dropped, lower-cased, stemmed by the Snowball English stemmer (PyStemmer, the C build
of the algorithm Lance's Rust stemmer implements), English stop words dropped after stemming,
accents folded to ASCII; stemming, stop words, folding and the length limit follow the
index's own parameters (`recqa tune qa` may turn the first two off). On the bundled StackFAQ answers, 100,000 generated answers and the 5,183 SciFact
abstracts every row's token count equals the count Lance's index stored, and the top 10 of
every question scored alike (benchmarks/RESULTS.md, "Keyword search from memory"). Lance
counts a word the question repeats once per repetition; so does `CorpusBM25`.

Why fresh chunks are not a second Lance table with its own index: the serving process never
writes tables (the layout rule), and they are indexed here the moment they are read from the
change log. Their scores use the document count of the whole served corpus, so they sit on
the scale of the table's own BM25 scores; a term's document frequency is counted in the
fresh chunks only, which favours them slightly until the next build indexes them.
"""

from __future__ import annotations

import re
import sys
import threading
import unicodedata
from array import array
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
import Stemmer
from scipy.sparse import csr_matrix

K1 = 1.2
B = 0.75
# Tokens of this many UTF-8 bytes or more are dropped (LanceDB's `max_token_length`).
MAX_TOKEN_BYTES = 40
# The English stop words Lance's index drops (NLTK's list: with it every row's token count
# equals the count Lance stored; with tantivy's older 33 words or Snowball's list it did not).
STOP_WORDS = frozenset(
    """i me my myself we our ours ourselves you you're you've you'll you'd your yours yourself yourselves he him his
    himself she she's her hers herself it it's its itself they them their theirs themselves what which who whom this
    that that'll these those am is are was were be been being have has had having do does did doing a an the and but
    if or because as until while of at by for with about against between into through during before after above below
    to from up down in out on off over under again further then once here there when where why how all any both each
    few more most other some such no nor not only own same so than too very s t can will just don don't should
    should've now d ll m o re ve y ain aren aren't couldn couldn't didn didn't doesn doesn't hadn hadn't hasn hasn't
    haven haven't isn isn't ma mightn mightn't mustn mustn't needn needn't shan shan't shouldn shouldn't wasn wasn't
    weren weren't won won't wouldn wouldn't""".split()
)
# Letters ASCII folding maps that Unicode decomposition leaves alone.
_FOLD = str.maketrans({"ß": "ss", "æ": "ae", "œ": "oe", "ø": "o", "đ": "d", "ð": "d", "þ": "th", "ł": "l", "ı": "i"})
# Alphanumeric runs. Python's \w is close to Rust's `char::is_alphanumeric` (Lance's split) but
# not equal: spacing marks of some scripts (Devanagari's vowel signs) split a word here and not
# there. The load-time check (serving/keywords.py) compares scores on the table's own questions.
_TOKEN = re.compile(r"[^\W_]+", re.UNICODE)
_STEMMERS = threading.local()  # PyStemmer's stemmer is not to be called from two threads at once


def _stem(word: str) -> str:
    stemmer = getattr(_STEMMERS, "english", None)
    if stemmer is None:
        stemmer = _STEMMERS.english = Stemmer.Stemmer("english")
    return stemmer.stemWord(word)


@dataclass(frozen=True)
class Analyzer:
    """The text analysis of one Lance full-text index, among the ones this module reproduces:
    its `simple` split and lower case always, the rest as the index's own parameters say
    (`Analyzer.of_index`). The default is LanceDB's `FTS()` default, which build-qa uses
    unless `recqa tune qa` chose otherwise."""

    stem: bool = True
    stop_words: bool = True
    ascii_folding: bool = True
    max_token_bytes: int | None = MAX_TOKEN_BYTES

    @classmethod
    def of_index(cls, details: dict) -> "Analyzer | str":
        """The analyzer of an index from its parameters (pylance's `describe_indices()[i].details`),
        or why this module cannot reproduce it."""
        expected = {"base_tokenizer": "simple", "language": "English", "lower_case": True, "custom_stop_words": None}
        for key, value in expected.items():
            if details.get(key, value) != value:
                return f"its {key} is {details.get(key)!r}; in memory only {value!r} is reproduced"
        limit = details.get("max_token_length", MAX_TOKEN_BYTES)
        return cls(bool(details.get("stem", True)), bool(details.get("remove_stop_words", True)),
                   bool(details.get("ascii_folding", True)), None if limit is None else int(limit))

    def tokens(self, text: str) -> list[str]:
        """The terms of `text` as the index makes them, in order."""
        terms = _TERMS.setdefault(self, {})  # a word's term, once per distinct word: stemming is most of the cost
        if len(terms) > MAX_CACHED_WORDS:
            terms.clear()  # bounded: a corpus with more distinct words than this starts over
        out = []
        for word in _TOKEN.findall(text):
            term = terms.get(word)
            if term is None:
                term = _term(word, self)
                if len(word) <= MAX_CACHED_WORD:  # a question's long runs would fill the cache with bytes
                    terms[word] = term
            if term:
                out.append(term)
        return out


# Distinct words whose term each analyzer keeps at most, and the longest word kept (characters).
MAX_CACHED_WORDS = 1 << 18
MAX_CACHED_WORD = 48
_TERMS: dict[Analyzer, dict[str, str]] = {}


def _term(word: str, analyzer: Analyzer) -> str:
    """The index term of one alphanumeric run, or "" when Lance's tokenizer drops it. The steps
    in Lance's order: too long, lower case, stem, stop words, ASCII folding."""
    if analyzer.max_token_bytes is not None and len(word.encode()) >= analyzer.max_token_bytes:
        return ""
    term = word.lower()
    if analyzer.stem:
        term = _stem(term)
    if analyzer.stop_words and term in STOP_WORDS:
        return ""
    if term.isascii() or not analyzer.ascii_folding:
        return term
    return "".join(c for c in unicodedata.normalize("NFKD", term.translate(_FOLD)) if not unicodedata.combining(c))


DEFAULT_ANALYZER = Analyzer()


def tokens(text: str) -> list[str]:
    """The terms of `text` as an index with LanceDB's default analysis makes them (see the module)."""
    return DEFAULT_ANALYZER.tokens(text)


def bm25_shares(corpus_size: int, document_frequency, tf, length, average_length):
    """Each posting's share of a BM25 score, Lance's formula (k1 K1, b B): the term's idf over
    `corpus_size` documents times its saturated frequency in a document of `length` tokens.
    Scalars or numpy arrays, in the dtype they come in."""
    idf = np.log1p((corpus_size - document_frequency + 0.5) / (document_frequency + 0.5))
    return idf * tf * (K1 + 1) / (tf + K1 * (1 - B + B * length / average_length))


# Postings a CorpusBM25 holds at most: its offsets are int32.
MAX_POSTINGS = 2**31 - 1


class TooManyPostings(ValueError):
    """A corpus whose postings pass the bound it was built with."""


class CorpusBM25:
    """The BM25 scores of one fixed corpus (a table version's rows), held as a sparse terms x
    rows matrix whose every entry is already its term's share of the score: a question's
    scores are one sparse product, its term counts times the matrix, with no Lance query
    planned or run. SciPy computes the product in C++ with the GIL released, and touches only
    the postings of the question's terms (the rows that match).

    `texts[i]` is row i; `top` and `scores` answer in those rows.
    """

    def __init__(self, texts: Iterable[str | None], analyzer: Analyzer = DEFAULT_ANALYZER, max_postings: int = MAX_POSTINGS) -> None:
        """`max_postings`: past this many (row, term) pairs the build stops with `TooManyPostings`
        while it still holds only the pairs read, about 16 bytes each (a budget, checked before
        the arrays that cost more are made)."""
        self.analyzer = analyzer
        tokens = analyzer.tokens
        max_postings = min(max_postings, MAX_POSTINGS)
        vocabulary: dict[str, int] = {}
        term_ids, rows, counts, lengths = array("i"), array("i"), array("f"), array("f")
        for row, text in enumerate(texts):
            found = Counter(tokens(text or ""))
            lengths.append(sum(found.values()))
            for term, count in found.items():
                term_ids.append(vocabulary.setdefault(term, len(vocabulary)))
                rows.append(row)
                counts.append(count)
            if len(term_ids) > max_postings:
                raise TooManyPostings(f"more than {max_postings:,} postings by row {row:,}")
        self.rows = len(lengths)
        ids = np.frombuffer(term_ids, np.int32)
        order = np.argsort(ids, kind="stable")  # by term, rows ascending within each
        frequency = np.bincount(ids, minlength=len(vocabulary))
        posting_rows = np.frombuffer(rows, np.int32)[order]
        length = np.frombuffer(lengths, np.float32)
        average = max(float(length.mean()), 1e-9) if self.rows else 1.0
        tf = np.frombuffer(counts, np.float32)[order]
        weights = bm25_shares(self.rows, frequency[ids[order]], tf, length[posting_rows], average).astype(np.float32)
        offsets = np.concatenate([[0], np.cumsum(frequency)]).astype(np.int32)  # < MAX_POSTINGS: no overflow
        self._vocabulary = vocabulary
        self._vocabulary_bytes = sys.getsizeof(vocabulary) + sum(map(sys.getsizeof, vocabulary))
        self._matrix = csr_matrix((weights, posting_rows, offsets), shape=(len(vocabulary), self.rows))

    @property
    def nbytes(self) -> int:
        matrix = self._matrix
        return int(matrix.data.nbytes + matrix.indices.nbytes + matrix.indptr.nbytes + self._vocabulary_bytes)

    def matches(self, query: str) -> tuple[np.ndarray, np.ndarray]:
        """The rows holding a term of `query` (in no order) and their BM25 scores; a word the
        question repeats counts once per repetition, as Lance counts it."""
        found = Counter(self._vocabulary[term] for term in self.analyzer.tokens(query) if term in self._vocabulary)
        if not found or not self.rows:
            return np.zeros(0, np.int64), np.zeros(0, np.float32)
        ids = np.fromiter(found.keys(), np.int32, len(found))
        order = np.argsort(ids)
        question = csr_matrix(
            (np.fromiter(found.values(), np.float32, len(found))[order], ids[order], np.array([0, len(ids)], np.int32)),
            shape=(1, self._matrix.shape[0]),
        )
        scores = question @ self._matrix
        return scores.indices.astype(np.int64), scores.data

    def scores(self, query: str) -> np.ndarray:
        """Every row's BM25 score for `query` (0 where no term matches)."""
        rows, found = self.matches(query)
        scores = np.zeros(self.rows, np.float32)
        scores[rows] = found
        return scores

    def top(self, query: str, depth: int, allowed: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """The `depth` best rows holding a term of `query` (among `allowed`, a row mask, if
        given) and their scores, best first; equal scores in row order."""
        rows, scores = self.matches(query)
        if allowed is not None:
            kept = allowed[rows]
            rows, scores = rows[kept], scores[kept]
        if depth <= 0:
            rows, scores = rows[:0], scores[:0]
        elif len(rows) > depth:  # every tie at the boundary, then trimmed by row: the same list every time
            kept = scores >= np.partition(scores, len(scores) - depth)[len(scores) - depth]
            rows, scores = rows[kept], scores[kept]
        order = np.lexsort((rows, -scores))[: max(depth, 0)]
        return rows[order], scores[order]


class PostingsBM25:
    """BM25 postings of texts added one at a time, never changed after: one index serves every
    overlay while the follower appends to it.

    A reader passes what it knows of it: `n`, the rows added when its overlay was made (later
    ones are ignored), and `dead`, a mask of the rows replaced or deleted since. Scoring reads
    only the postings of the query's terms, as numpy arrays, so its cost is the matching rows
    and not a Python loop over them.

    Appends are safe beside readers without a lock: each term's postings are arrays that grow
    into copies (a reader keeps the arrays it took), published as a new (rows, tfs, count)
    tuple after the row is written; a row's length is written before the row count grows,
    and readers never look at rows at or past their `n`.
    """

    def __init__(self, analyzer: Analyzer = DEFAULT_ANALYZER) -> None:
        self.analyzer = analyzer  # the served table's index's, so fresh chunks and its rows share terms
        self._postings: dict[str, tuple[np.ndarray, np.ndarray, int]] = {}
        self._lengths = np.zeros(64, np.int64)
        self._rows = 0

    def add(self, text: str) -> int:
        """Index one text; returns its row number (the count of texts before it)."""
        row, counts = self._rows, Counter(self.analyzer.tokens(text))
        for term, tf in counts.items():
            rows, tfs, count = self._postings.get(term) or (np.zeros(4, np.int64), np.zeros(4, np.float64), 0)
            if count == len(rows):
                rows, tfs = _grown(rows, count), _grown(tfs, count)
            rows[count], tfs[count] = row, tf
            self._postings[term] = (rows, tfs, count + 1)
        if row == len(self._lengths):
            self._lengths = _grown(self._lengths, row)
        self._lengths[row] = sum(counts.values())
        self._rows = row + 1
        return row

    def length(self, row: int) -> int:
        """The token count of one row's text (its BM25 document length)."""
        if not 0 <= row < self._rows:
            raise IndexError(f"row {row} is not indexed ({self._rows} rows)")
        return int(self._lengths[row])

    def scores(
        self, query: str, n: int, dead: np.ndarray, corpus_size: int, average_length: float
    ) -> tuple[np.ndarray, np.ndarray]:
        """The rows below `n` not marked in `dead` (a boolean mask of at least n rows) that hold
        a query term, ascending, and the BM25 score of each.

        `corpus_size` is the document count of the whole served corpus (the table's rows and
        the live fresh ones) and `average_length` the fresh rows' mean length, so the scores
        sit on the scale of the table's own full-text scores (see the module).
        """
        lengths = self._lengths  # one array for the whole call: a later growth copies, never changes it
        found_rows, found_scores = [], []
        for term, repeats in Counter(self.analyzer.tokens(query)).items():  # a repeated word counts each time, as in Lance
            posting = self._postings.get(term)
            if posting is None:
                continue
            rows, tfs, count = posting
            cut = int(np.searchsorted(rows[:count], n))  # rows ascend: the overlay's are a prefix
            rows, tfs = rows[:cut], tfs[:cut]
            if cut:
                live = ~dead[rows]
                rows, tfs = rows[live], tfs[live]
            if not len(rows):
                continue
            df = len(rows)
            found_rows.append(rows)
            found_scores.append(repeats * bm25_shares(corpus_size, df, tfs, lengths[rows], max(average_length, 1e-9)))
        if not found_rows:
            return np.zeros(0, np.int64), np.zeros(0, np.float64)
        rows, inverse = np.unique(np.concatenate(found_rows), return_inverse=True)
        return rows, np.bincount(inverse, weights=np.concatenate(found_scores), minlength=len(rows))


def _grown(array: np.ndarray, used: int) -> np.ndarray:
    """A copy of `array` with twice the room and its first `used` entries."""
    grown = np.zeros(max(2 * len(array), 4), array.dtype)
    grown[:used] = array[:used]
    return grown
