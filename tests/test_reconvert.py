"""Reading series ahead of their reconversion."""

from __future__ import annotations

import threading

import pytest

import rtforge.reconvert as reconvert
from rtforge.errors import InvalidInputError, RtforgeError
from rtforge.reconvert import read_ahead


def test_read_ahead_keeps_order_delivers_errors_and_reads_one_ahead(phantom_patient, tmp_path,
                                                                    monkeypatch) -> None:
    good = [sorted(s.folder.glob("*.dcm")) for s in phantom_patient]
    bad = [tmp_path / "missing.dcm"]
    lock = threading.Lock()
    started: list[int] = []
    real = reconvert.read_series

    def counting(paths):  # the real reader, recording when each read starts
        with lock:
            started.append(len(paths))
        return real(paths)

    monkeypatch.setattr(reconvert, "read_series", counting)
    sources = [good[0], bad, good[1], good[0]]
    handles = read_ahead(sources)
    first = next(handles)
    series = first()
    assert series.series_uid == phantom_patient[0].series_uid
    # While the first is in use only the next one may be read: never two ahead.
    assert len(started) <= 2
    with pytest.raises(InvalidInputError, match="missing.dcm"):
        next(handles)()
    assert next(handles)().series_uid == phantom_patient[1].series_uid
    last = next(handles)
    assert last().series_uid == phantom_patient[0].series_uid
    with pytest.raises(StopIteration):
        next(handles)
    assert started == [len(s) for s in sources]
    with pytest.raises(RtforgeError, match="already taken"):
        last()


def test_read_ahead_of_nothing_yields_nothing() -> None:
    assert list(read_ahead([])) == []
