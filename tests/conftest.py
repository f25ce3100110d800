"""Fixtures shared by the whole suite."""

from __future__ import annotations

from pathlib import Path

import pytest

from rtforge.demo import PhantomSeries, make_phantom_patient


@pytest.fixture(scope="session")
def phantom_patient(tmp_path_factory: pytest.TempPathFactory) -> list[PhantomSeries]:
    """The phantom patient (oblique and tilted acquisitions), small: 64x64, 16 slices.

    Read-only for tests: copy it before changing anything.
    """
    root = tmp_path_factory.mktemp("phantom") / "source"
    return make_phantom_patient(root, size=64, nslices=16)


@pytest.fixture(scope="session")
def phantom_root(phantom_patient: list[PhantomSeries]) -> Path:
    """Folder holding the phantom patient's two series."""
    return phantom_patient[0].folder.parents[2]
