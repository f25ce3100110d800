"""The batch's discovery: worker processes only where a collection is large enough."""

from __future__ import annotations

from concurrent.futures import ProcessPoolExecutor

import rtforge.io.series as series_module
import rtforge.workflows.batch as batch
from rtforge.workflows.reconvert import ReconvertOptions


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


def test_on_todo_is_told_how_many_series_are_left_before_any_is_done(phantom_root,
                                                                      tmp_path) -> None:
    told: list[tuple[int, int]] = []
    out = tmp_path / "out"

    def todo(count: int) -> None:
        told.append((count, len(list(out.rglob("*.dcm")))))

    options = ReconvertOptions(durable=False)
    first = batch.run_batch(phantom_root, out, options, workers=1, on_todo=todo)
    again = batch.run_batch(phantom_root, out, options, workers=1, on_todo=todo)
    assert told == [(2, 0), (0, told[1][1])] and told[1][1] > 0
    assert len(first.done) == 2 and len(again.skipped) == 2
