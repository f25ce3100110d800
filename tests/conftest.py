"""Fixtures shared by the whole suite."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from rtforge.workflows.demo import PhantomSeries, make_phantom_patient

if TYPE_CHECKING:  # the network peers are imported only by tests that use them
    from tests.net.archive_peers import Archive


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


@pytest.fixture
def archive(tmp_path: Path) -> Iterator[Archive]:
    """Orthanc, empty; its only modality is the restore SCP (AE title and port)."""
    from tests.net.archive_peers import Archive
    from tests.net.peers import free_port

    peer = Archive(tmp_path / "orthanc", restore_port=free_port())
    peer.start()
    try:
        yield peer
    finally:
        peer.kill()  # its database is thrown away: no need for a clean shutdown
