"""Synthetic input-contract data at any size, for benchmarks and scale tests.

The bundled samples (ms-store, StackFAQ) are a few thousand rows; timing the pipelines and the
service at scale needs more, with enough structure that results mean something. Users and items
belong to latent topics (users mostly pick items of their topic), item popularity is Zipf-like,
and titles, answers and questions draw on per-topic English vocabularies, so text similarity
follows the topic. Output is deterministic for a given seed; rows are made and written in
chunks, so memory stays bounded whatever the size.

    python benchmarks/generate.py --out /tmp/synth --interactions 1000000 --items 100000 \\
        --users 50000 --documents 100000 --seed 0 --format parquet
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pa_csv
import pyarrow.parquet as pq

# Theme name, then its words. Latent topic k uses theme k % len(THEMES): taste clusters can be
# finer than the text themes, as real categories are coarser than tastes.
THEMES = [line.split() for line in """
kitchen pan skillet knife blender oven recipe spatula kettle toaster cutlery bake simmer whisk pot
garden soil seeds hose shovel compost lawn mower pruning fertilizer planter weeds tomato rake
audio headphones speaker amplifier bluetooth bass volume microphone earbuds stereo cable treble
camera lens tripod shutter aperture flash sensor zoom portrait exposure lighting focus memory
travel luggage passport flight hotel suitcase backpack airport itinerary visa booking ticket map
fitness treadmill dumbbell yoga workout protein running stretching kettlebell cardio mat rowing
finance budget savings invoice mortgage interest loan credit account payment tax refund deposit
pets dog cat leash kibble litter aquarium collar vet grooming treats kennel puppy parrot
office printer stapler desk chair notebook ink paper monitor keyboard calendar folder envelope
gaming console controller joystick graphics headset multiplayer level save patch mouse arcade
automotive tire engine brake battery oil wiper headlight transmission bumper dashboard fuel jack
beauty lipstick shampoo moisturizer serum perfume mascara conditioner sunscreen nail brush lotion
books novel paperback author chapter hardcover library poetry biography thriller fiction ebook
outdoor tent sleeping lantern hiking compass stove trail boots kayak fishing campfire jacket
health vitamin thermometer bandage allergy pharmacy pressure sleep prescription dental clinic
home sofa lamp curtain rug mattress pillow shelf vacuum drawer blanket cushion wardrobe
""".strip().splitlines()]
FILLER = ("the a to with for and of in your this is it you can on when after before my more "
          "best new good easy small large daily quick simple light strong without about").split()
STARTERS = ["How do I", "What is the best", "Why does my", "Can I", "Where can I find",
            "Is it possible to", "How should I", "What happens if", "Which", "How long does"]
FORMATS = ("csv", "jsonl", "parquet")
EVENTS = ["view", "click", "cart", "purchase"]
EVENT_PROBABILITIES = [0.70, 0.18, 0.08, 0.04]
SOURCES = ["faq", "forum", "manual", "support"]
TIME_START_SECONDS = 1_704_067_200  # 2024-01-01T00:00:00Z
TIME_SPAN_SECONDS = 180 * 86_400
CHUNK_ROWS = 500_000  # fixed, not a flag: the output must depend only on the seed and sizes
IN_TOPIC_PROBABILITY = 0.8
N_KEYS = 3  # words a single item or document repeats across its title/question and text/answer

_VOCAB = pa.array(FILLER + [w for theme in THEMES for w in theme[1:]])
_THEME_OFFSETS = np.cumsum([len(FILLER)] + [len(t) - 1 for t in THEMES])[:-1]
_THEME_SIZES = np.array([len(t) - 1 for t in THEMES])


@dataclass(frozen=True)
class Latent:
    """Hidden structure shared by the items and the interactions generated from it."""

    user_topic: np.ndarray  # (n_users,) topic of each user
    item_topic: np.ndarray  # (n_items,) topic of each item
    item_by_topic: np.ndarray  # item indices sorted by topic
    topic_cdf: np.ndarray  # cumulative popularity over item_by_topic, topic k spanning (k, k+1]
    item_cdf: np.ndarray  # cumulative popularity over all items
    user_cdf: np.ndarray  # cumulative activity over users


def _zipf_cdf(n: int, exponent: float, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Zipf weights 1/rank**exponent with ranks shuffled over ids; (weights, normalised cdf)."""
    weights = 1.0 / rng.permutation(np.arange(1, n + 1)) ** exponent
    return weights, np.cumsum(weights) / weights.sum()


def make_latent(n_users: int, n_items: int, rng: np.random.Generator, n_topics: int = len(THEMES),
                item_exponent: float = 1.0, user_exponent: float = 0.6) -> Latent:
    """Balanced random topics for users and items, Zipf item popularity and user activity."""
    user_topic = rng.permutation(np.arange(n_users) % n_topics)
    item_topic = rng.permutation(np.arange(n_items) % n_topics)
    item_weight, item_cdf = _zipf_cdf(n_items, item_exponent, rng)
    _, user_cdf = _zipf_cdf(n_users, user_exponent, rng)
    order = np.argsort(item_topic, kind="stable")
    topic = item_topic[order]
    cum = np.cumsum(item_weight[order])
    first = np.concatenate([[0], np.cumsum(np.bincount(item_topic, minlength=n_topics))[:-1]])
    before = np.concatenate([[0.0], cum])[first]  # popularity mass of the earlier topics
    totals = np.bincount(item_topic, weights=item_weight, minlength=n_topics)
    topic_cdf = topic + (cum - before[topic]) / totals[topic]
    return Latent(user_topic, item_topic, order, topic_cdf, item_cdf, user_cdf)


def _ids(prefix: str, index: np.ndarray, total: int) -> pa.Array:
    width = len(str(max(total - 1, 0)))
    return pc.binary_join_element_wise(prefix, pc.utf8_lpad(pa.array(index).cast(pa.string()), width, "0"), "")


def _texts(rng: np.random.Generator, theme: np.ndarray, keys: np.ndarray, low: int, high: int,
           p_key: float, p_theme: float) -> pa.Array:
    """Word salad per row: len in [low, high], each word a row key, a theme word or a filler."""
    lengths = rng.integers(low, high + 1, size=len(theme))
    row = np.repeat(np.arange(len(theme)), lengths)
    draw = rng.random(len(row))
    words = rng.integers(0, len(FILLER), size=len(row))
    themed = draw < p_key + p_theme
    words[themed] = _THEME_OFFSETS[theme[row[themed]]] + (rng.integers(0, 1 << 30, themed.sum())
                                                          % _THEME_SIZES[theme[row[themed]]])
    keyed = draw < p_key
    words[keyed] = keys[row[keyed], rng.integers(0, keys.shape[1], keyed.sum())]
    offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int32)
    return pc.binary_join(pa.ListArray.from_arrays(pa.array(offsets), _VOCAB.take(pa.array(words))), " ")


def _keys(rng: np.random.Generator, theme: np.ndarray) -> np.ndarray:
    pick = rng.integers(0, 1 << 30, size=(len(theme), N_KEYS)) % _THEME_SIZES[theme][:, None]
    return _THEME_OFFSETS[theme][:, None] + pick


def generate_interactions(n: int, n_users: int, n_items: int, rng: np.random.Generator,
                          latent: Latent | None = None, time_range: tuple[int, int] | None = None) -> pa.Table:
    """`n` events sorted by time; users mostly pick popular items of their own topic."""
    latent = latent or make_latent(n_users, n_items, rng)
    start, end = time_range or (TIME_START_SECONDS, TIME_START_SECONDS + TIME_SPAN_SECONDS)
    user = np.minimum(np.searchsorted(latent.user_cdf, rng.random(n)), n_users - 1)
    in_topic = rng.random(n) < IN_TOPIC_PROBABILITY
    item = np.minimum(np.searchsorted(latent.item_cdf, rng.random(n)), n_items - 1)
    target = latent.user_topic[user[in_topic]] + rng.random(in_topic.sum())
    picked = np.minimum(np.searchsorted(latent.topic_cdf, target), n_items - 1)
    item[in_topic] = latent.item_by_topic[picked]
    event = rng.choice(len(EVENTS), size=n, p=EVENT_PROBABILITIES)
    has_value = (event == EVENTS.index("purchase")) & (rng.random(n) < 0.5)  # a quantity, on half the purchases
    return pa.table({
        "user_id": _ids("u", user, n_users),
        "item_id": _ids("i", item, n_items),
        "timestamp": pa.array(np.sort(rng.integers(start, end, size=n))),
        "event": pa.array(EVENTS).take(pa.array(event)),
        "value": pa.array(rng.integers(1, 4, size=n), mask=~has_value),
    })


def generate_items(n_items: int, rng: np.random.Generator, latent: Latent | None = None,
                   first: int = 0, total: int | None = None) -> pa.Table:
    """Catalogue rows `first..first+n_items`; title and text use the item's topic vocabulary."""
    latent = latent or make_latent(1, first + n_items, rng)
    theme = latent.item_topic[first:first + n_items] % len(THEMES)
    keys = _keys(rng, theme)
    return pa.table({
        "item_id": _ids("i", np.arange(first, first + n_items), total or first + n_items),
        "title": pc.utf8_title(_texts(rng, theme, keys, 2, 5, 0.6, 0.3)),
        "text": pc.utf8_capitalize(_texts(rng, theme, keys, 12, 40, 0.15, 0.4)),
        "category": pa.array([t[0] for t in THEMES]).take(pa.array(theme)),
    })


def generate_documents(n: int, rng: np.random.Generator, first: int = 0, total: int | None = None) -> pa.Table:
    """FAQ rows: a 6-14 word question, a 20-60 word answer sharing its key words, topic tags."""
    theme = rng.integers(0, len(THEMES), size=n)
    keys = _keys(rng, theme)
    starter = rng.integers(0, len(STARTERS), size=n)
    body = _texts(rng, theme, keys, 5, 10, 0.4, 0.35)  # starters are 1-4 words: 6-14 in all
    question = pc.binary_join_element_wise(pa.array(STARTERS).take(pa.array(starter)), " ", body, "?", "")
    answer = pc.binary_join_element_wise(pc.utf8_capitalize(_texts(rng, theme, keys, 20, 60, 0.15, 0.4)), ".", "")
    names = pa.array([t[0] for t in THEMES]).take(pa.array(theme))
    flat = pa.concat_arrays([names, _VOCAB.take(pa.array(keys[:, 0]))]).take(
        pa.array(np.arange(2 * n).reshape(2, n).T.ravel()))
    return pa.table({
        "doc_id": _ids("doc", np.arange(first, first + n), total or first + n),
        "question": question,
        "answer": answer,
        "source": pa.array(SOURCES).take(pa.array(rng.choice(len(SOURCES), size=n, p=[0.5, 0.2, 0.2, 0.1]))),
        "tags": pa.ListArray.from_arrays(pa.array(np.arange(0, 2 * n + 1, 2, dtype=np.int32)), flat),
    })


def _json_values(column: pa.ChunkedArray) -> pa.ChunkedArray | None:
    """Each value as JSON text, vectorised; None where only json.dumps would be right."""
    if pa.types.is_list(column.type) and pa.types.is_string(column.type.value_type):
        column = column.combine_chunks()
        inner = _json_values(pa.chunked_array([column.values]))
        if inner is None:
            return None
        lists = pa.ListArray.from_arrays(column.offsets, inner.combine_chunks(), mask=column.is_null())
        joined = pc.binary_join(lists, ",")
        text = pc.binary_join_element_wise("[", joined, "]", "")
    elif pa.types.is_string(column.type):
        if pc.any(pc.match_substring_regex(column, "[\\x00-\\x1f]")).as_py():
            return None
        escaped = pc.replace_substring(pc.replace_substring(column, "\\", "\\\\"), '"', '\\"')
        text = pc.binary_join_element_wise('"', escaped, '"', "")
    elif pa.types.is_integer(column.type):
        text = column.cast(pa.string())
    else:
        return None
    return pc.fill_null(text, "null")


def _json_lines(table: pa.Table) -> str:
    """JSON lines for `table`: vectorised for strings, integers and string lists."""
    values = [_json_values(column) for column in table.columns]
    if any(v is None for v in values):
        return "".join(json.dumps(row, separators=(",", ":")) + "\n" for row in table.to_pylist())
    parts = [p for name, v in zip(table.column_names, values) for p in (f",{json.dumps(name)}:", v)]
    parts[0] = "{" + parts[0][1:]
    return "".join(pc.binary_join_element_wise(*parts, "}\n", "").to_pylist())


def write_tables(tables: Iterable[pa.Table], path: str | Path) -> None:
    """Stream tables of one schema into `path`, formatted by its extension (.csv, .jsonl, .parquet)."""
    path, sink = Path(path), None
    kind = path.suffix.lstrip(".")
    if kind not in FORMATS:
        raise ValueError(f"{path}: extension must be one of {', '.join(FORMATS)}")
    try:
        for table in tables:
            if kind == "csv":  # the contract's CSV form: lists become comma-separated strings
                table = pa.table({name: pc.binary_join(col, ",") if pa.types.is_list(col.type) else col
                                  for name, col in zip(table.column_names, table.columns)})
            if sink is None and kind == "jsonl":
                sink = open(path, "w", encoding="utf-8")
            elif sink is None:
                sink = (pq.ParquetWriter(path, table.schema) if kind == "parquet" else pa_csv.CSVWriter(
                    path, table.schema, write_options=pa_csv.WriteOptions(quoting_style="needed")))
            if kind == "jsonl":
                sink.write(_json_lines(table))
            else:
                sink.write_table(table)
    finally:
        if sink is not None:
            sink.close()


def write_table(table: pa.Table, path: str | Path) -> None:
    """Write one table to `path`, formatted by its extension (.csv, .jsonl, .parquet)."""
    write_tables([table], path)


def main(argv: list[str] | None = None) -> None:
    """Parse flags, write the three contract files and print their sizes and timings."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], epilog=__doc__.split("\n\n", 1)[1],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", required=True, type=Path, help="directory for the three files")
    parser.add_argument("--interactions", type=int, default=100_000, help="interaction rows")
    parser.add_argument("--items", type=int, default=10_000, help="catalogue rows")
    parser.add_argument("--users", type=int, default=10_000, help="distinct users to draw from")
    parser.add_argument("--documents", type=int, default=10_000, help="QA document rows")
    parser.add_argument("--topics", type=int, default=len(THEMES), help="latent user/item topics (text themes: 16)")
    parser.add_argument("--seed", type=int, default=0, help="same seed and sizes, same bytes")
    parser.add_argument("--format", choices=FORMATS, default="csv", help="file type of all three")
    args = parser.parse_args(argv)
    for flag in ("interactions", "items", "users", "documents", "topics"):
        if getattr(args, flag) < 1:
            parser.error(f"--{flag} must be at least 1, got {getattr(args, flag)}")
    args.out.mkdir(parents=True, exist_ok=True)
    # One stream per table: changing --interactions or --documents leaves the other files as they were.
    latent_rng, inter_rng, item_rng, doc_rng = (np.random.default_rng([args.seed, k]) for k in range(4))
    latent = make_latent(args.users, args.items, latent_rng, n_topics=args.topics)
    chunks = max(1, -(-args.interactions // CHUNK_ROWS))
    step = TIME_SPAN_SECONDS // chunks  # each chunk its own time slice, so the file stays time-sorted
    jobs = {
        "interactions": (args.interactions, lambda lo, n: generate_interactions(
            n, args.users, args.items, inter_rng, latent,
            (TIME_START_SECONDS + lo // CHUNK_ROWS * step, TIME_START_SECONDS + (lo // CHUNK_ROWS + 1) * step))),
        "items": (args.items, lambda lo, n: generate_items(n, item_rng, latent, lo, args.items)),
        "documents": (args.documents, lambda lo, n: generate_documents(n, doc_rng, lo, args.documents)),
    }
    for name, (total, make) in jobs.items():
        began = time.perf_counter()
        path = args.out / f"{name}.{args.format}"
        write_tables((make(lo, min(CHUNK_ROWS, total - lo)) for lo in range(0, total, CHUNK_ROWS)), path)
        print(f"{path}: {total:,} rows, {path.stat().st_size / 1e6:.1f} MB, {time.perf_counter() - began:.2f} s")


if __name__ == "__main__":
    main()
