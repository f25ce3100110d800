"""table_edges: every bin of an external-beam DVH, a bounded table for a brachytherapy one."""

from __future__ import annotations

import numpy as np
import pytest

from rtforge.core.dvh import (
    DEFAULT_BIN_WIDTH_GY,
    DVH,
    TABLE_FINE_ROWS,
    TABLE_GROWTH,
    TABLE_MAX_ROWS,
    table_edges,
)
from rtforge.errors import InvalidInputError


def _dvh(differential: np.ndarray, name: str = "ROI") -> DVH:
    edges = np.arange(differential.shape[0] + 1) * DEFAULT_BIN_WIDTH_GY
    return DVH(edges, differential, 0.0, 1.0, float(edges[-1]), name=name)


def test_every_bin_when_the_table_is_short() -> None:
    dvh = _dvh(np.ones(7000))  # 70 Gy in 0.01 Gy bins
    np.testing.assert_array_equal(table_edges([dvh]), np.arange(7001))


def test_a_long_tail_is_bounded_and_exact_at_every_kept_edge() -> None:
    # an LDR-like DVH: nearly all the volume below 300 Gy, a sliver up to 20,000 Gy
    # (2 million bins of 0.01 Gy)
    n = 2_000_000
    differential = np.zeros(n)
    differential[:30_000] = 1e-3
    differential[30_000:] = 1e-9
    dvh = _dvh(differential)
    other = _dvh(differential[::-1].copy(), "Other")
    kept = table_edges([dvh, other])
    assert kept[0] == 0 and kept[-1] == n and np.all(np.diff(kept) > 0)
    assert TABLE_FINE_ROWS < kept.shape[0] < TABLE_MAX_ROWS
    # uniform up to the highest D1, every m-th bin
    d1 = max(dvh.dose_at_volume(1.0), other.dose_at_volume(1.0))
    fine = kept[dvh.edges[kept] <= d1]
    assert np.unique(np.diff(fine)).size == 1 and fine.shape[0] <= TABLE_FINE_ROWS + 1
    # above it the dose grows by at least the factor (or one fine step) from row to row
    tail = dvh.edges[kept[dvh.edges[kept] > d1]]
    assert np.all(tail[1:] >= tail[:-1] * TABLE_GROWTH - 1e-9)


def test_edges_must_be_shared() -> None:
    with pytest.raises(InvalidInputError, match="share their bin edges"):
        table_edges([_dvh(np.ones(20_000)), _dvh(np.ones(20_001))])
