"""IVF-PQ sizes from the table: the builds index with them and the service searches with them.

Both come from the row count of the indexed version, so a reader derives the partition count
the writer used without reading the index (whose statistics load every centroid).
"""

from __future__ import annotations

import math

# A query probes at least MIN_PROBES partitions and at least MIN_ROWS_PROBED rows' worth of
# them. Partitions hold ~sqrt(rows) rows each, so the second only raises the probes of an index
# forced onto a small table, whose neighbours spread over a large share of its few partitions;
# past 62,500 rows 20 probes scan more than that, and the recall of larger tables is bounded by
# PQ and restored by the refine, not by more probes (benchmarks/RESULTS.md, "IVF-PQ at
# 1,000,000 x 384" and "Choosing nprobes").
MIN_PROBES = 20
MIN_ROWS_PROBED = 5_000


def ivf_pq_parameters(rows: int, dimension: int) -> dict[str, int]:
    """IVF-PQ sizes from the table's shape: ~sqrt(rows) partitions, 8-dim PQ sub-vectors.

    Sub-vectors must divide the dimension; 8 dims each keeps the code small and recall high
    after refine.
    """
    return {"num_partitions": partitions_for(rows), "num_sub_vectors": next(
        d for d in (dimension // 8, dimension // 4, dimension // 2, dimension, 1) if d and dimension % d == 0)}


def partitions_for(rows: int) -> int:
    """The IVF partition count of an index built over `rows` rows."""
    return max(1, min(4096, int(round(math.sqrt(rows)))))


def search_nprobes(rows: int) -> int:
    """Partitions a query probes in an index built over `rows` rows (all of them when the
    table is smaller than MIN_ROWS_PROBED)."""
    partitions = partitions_for(rows)
    return min(partitions, max(MIN_PROBES, math.ceil(MIN_ROWS_PROBED * partitions / max(rows, 1))))
