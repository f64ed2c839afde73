"""`tnfast query` answered 100 times in a row over a genome-sized store stays within a fixed memory bound.

A long-lived caller (a notebook, a service) must be able to query the same store again and
again: after a few warm-up queries (imports, allocator pools), memory may not keep growing.
The store (1,500 genes x 3 types x 978 landmarks, 18 MB of float32) is large enough that
keeping any one query's working set (its 4,500 hits, a decoded chunk) would add over a MiB
per query. Two bounds: the Python heap (tracemalloc, numpy arrays included), exact enough
to catch a few KiB a query, and the resident set (RSS), which also sees native memory (the
chunk codecs) but wanders by a few MiB as the allocator's per-thread arenas fill unevenly.
"""

from __future__ import annotations

import gc
import tracemalloc
from pathlib import Path

import numpy as np
import pytest
import zarr

from tnfast.query import query

N_GENES, N_LANDMARKS, CHUNK = 1500, 978, 250
TYPES = ["RNAi", "CRISPR", "OE"]
N_QUERIES, WARM_UP = 100, 5
HEAP_BOUND_MIB = 1  # 95 queries each keeping a few KiB would pass it
RSS_BOUND_MIB = 32  # allocator wander seen: under 16 MiB; keeping each query's hits: about 140 MiB


def write_store(path: Path) -> Path:
    """A complete preds.zarr with the layout `tnfast infer` writes, filled with random predictions."""
    n_chunks = -(-N_GENES // CHUNK)
    genes = np.arange(1, N_GENES + 1).astype(str)
    landmarks = np.arange(100_001, 100_001 + N_LANDMARKS).astype(str)
    root = zarr.open_group(path, mode="w")
    root.attrs.update({"format": "tnfast-preds", "version": 1, "tnfast_version": "0", "run_id": "load",
                       "units": "u", "chunk": CHUNK, "complete": True})
    pred = root.create_array("predictions", shape=(len(TYPES), N_GENES, N_LANDMARKS),
                             chunks=(len(TYPES), CHUNK, N_LANDMARKS), dtype="float32", fill_value=np.nan,
                             dimension_names=("perturbation", "gene", "landmark"))
    pred[:] = np.random.default_rng(0).normal(size=pred.shape).astype(np.float32)
    for dim, values in (("perturbation", TYPES), ("gene", genes), ("landmark", landmarks)):
        root.create_array(dim, shape=(len(values),), dtype=str, dimension_names=(dim,))[:] = np.array(values)
    root.create_array("measured", data=np.ones((len(TYPES), N_GENES), bool), dimension_names=("perturbation", "gene"))
    root.create_array("done", shape=(n_chunks,), chunks=(1,), dtype="uint8", fill_value=0)[:] = 1
    return path


def rss_mib() -> float:
    """This process's resident set size (Linux /proc)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS in /proc/self/status")


@pytest.mark.skipif(not Path("/proc/self/status").is_file(), reason="reads RSS from Linux /proc")
def test_query_100_times_stays_within_a_memory_bound(tmp_path):
    store = write_store(tmp_path / "p.zarr")
    signature = tmp_path / "q.tsv"
    values = np.random.default_rng(1).normal(size=N_LANDMARKS)
    lms = np.arange(100_001, 100_001 + N_LANDMARKS)
    signature.write_text("landmark_id\tvalue\n" + "".join(f"{lm}\t{v}\n" for lm, v in zip(lms, values)))
    heap, rss = [], []
    tracemalloc.start()
    try:
        for _ in range(N_QUERIES):
            hits = query(store, signature)
            assert len(hits) == len(TYPES) * N_GENES
            del hits
            gc.collect()  # only memory still referenced counts, not garbage awaiting a collection
            heap.append(tracemalloc.get_traced_memory()[0] / 2**20)
            rss.append(rss_mib())
    finally:
        tracemalloc.stop()
    for name, series, bound in (("Python heap", heap, HEAP_BOUND_MIB), ("RSS", rss, RSS_BOUND_MIB)):
        growth = max(series[WARM_UP:]) - series[WARM_UP - 1]
        assert growth < bound, (f"{name} grew {growth:.1f} MiB over queries {WARM_UP + 1}..{N_QUERIES}: "
                                f"{[round(x, 1) for x in series]}")
