"""The batch's discovery: worker processes only where a collection is large enough."""

from __future__ import annotations

from concurrent.futures import ProcessPoolExecutor

import rtforge.io.series as series_module
import rtforge.workflows.batch as batch


def _counting_pools(monkeypatch) -> list[ProcessPoolExecutor]:
    made: list[ProcessPoolExecutor] = []

    class Counting(ProcessPoolExecutor):  # the real pool, its instances recorded
        def __init__(self, *args, **kwargs) -> None:
            super().__init__(*args, **kwargs)
            made.append(self)

    monkeypatch.setattr(batch, "ProcessPoolExecutor", Counting)
    return made


def test_a_small_collection_is_scanned_without_making_a_pool(phantom_root, monkeypatch) -> None:
    made = _counting_pools(monkeypatch)
    found = batch.discover(phantom_root, processes=2)
    assert made == []  # not even an idle one (its resource tracker is a process)
    assert found == batch.discover(phantom_root, processes=1)


def test_a_large_collection_is_scanned_by_a_pool_with_the_same_result(phantom_root,
                                                                      monkeypatch) -> None:
    expected = batch.discover(phantom_root, processes=1)
    made = _counting_pools(monkeypatch)
    # Small chunks, so that the phantom counts as large.
    monkeypatch.setattr(series_module, "_SCAN_CHUNK", 2)
    monkeypatch.setattr(series_module, "_PARALLEL_SCAN_CHUNKS", 2)
    assert batch.discover(phantom_root, processes=2) == expected
    assert len(made) == 1
