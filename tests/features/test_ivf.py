"""IVF-PQ sizes: what the builds index with and the service searches with, from the rows."""

from __future__ import annotations

import pytest

from features.ivf import MIN_PROBES, MIN_ROWS_PROBED, ivf_pq_parameters, partitions_for, search_nprobes
from features.schemas import ANSWER_INDEX


@pytest.mark.parametrize(("rows", "dimension", "partitions", "sub_vectors"), [(50_000, 384, 224, 48), (100, 32, 10, 4), (10_000, 36, 100, 4)])
def test_ivf_pq_parameters_follow_the_table_shape(rows, dimension, partitions, sub_vectors):
    parameters = ivf_pq_parameters(rows, dimension)
    assert parameters == {"num_partitions": partitions, "num_sub_vectors": sub_vectors}
    assert dimension % parameters["num_sub_vectors"] == 0


@pytest.mark.parametrize("rows", [1, 900, 9_208, 25_000, 62_500, 100_000, 1_000_000, 50_000_000])
def test_a_query_probes_enough_partitions_to_search_a_few_thousand_rows(rows):
    partitions, probes = partitions_for(rows), search_nprobes(rows)
    assert 1 <= probes <= partitions
    assert probes == partitions or probes * rows / partitions >= MIN_ROWS_PROBED  # the rows the probes hold, on average
    assert probes == partitions or probes >= MIN_PROBES


def test_small_forced_indexes_probe_more_and_large_ones_keep_the_floor():
    assert search_nprobes(900) == partitions_for(900)  # under MIN_ROWS_PROBED rows: every partition
    assert search_nprobes(9_208) == 53  # SciFact's chunks: 96 partitions
    assert search_nprobes(100_000) == search_nprobes(1_000_000) == MIN_PROBES


def test_an_index_config_resolves_nprobes_from_the_rows_unless_set():
    assert ANSWER_INDEX.nprobes is None
    assert ANSWER_INDEX.searched(9_208).nprobes == search_nprobes(9_208)
    fixed = ANSWER_INDEX.searched(100_000)
    assert fixed.searched(9_208) is fixed  # set once: kept
