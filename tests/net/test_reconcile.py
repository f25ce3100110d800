"""``reconcile_store``: a receiver's folder and the catalog agree again after a crash."""

from __future__ import annotations

import shutil
from pathlib import Path

from pydicom import dcmread
from pydicom.uid import generate_uid

from rtforge.net import StorageSCP, reconcile_store
from rtforge.net.catalog import Catalog, InstanceState
from tests.datafiles import pydicom_file
from tests.net.peers import LOCALHOST, encode_data_set, received_files, scp_node, store_raw


def _receive(out: Path, *datasets) -> list[Path]:
    """Store each data set with our SCP; the files, in the order stored."""
    paths: list[Path] = []
    with StorageSCP(out, port=0, host=LOCALHOST,
                    on_stored=lambda obj: paths.append(obj.path)) as server:
        for ds in datasets:
            assert store_raw(scp_node(server), ds.SOPClassUID, ds.SOPInstanceUID,
                             encode_data_set(ds)).status == 0
    return paths


def _rows(catalog: Catalog, out: Path) -> dict[Path, InstanceState]:
    return {r.path: r.state for r in catalog.records_under(out)}


def test_files_without_rows_rows_without_files_and_changed_files(tmp_path: Path) -> None:
    out = tmp_path / "rx"
    ct, plan, dose = (dcmread(pydicom_file(n)) for n in ("CT_small.dcm", "rtplan.dcm",
                                                         "rtdose.dcm"))
    ct_path, plan_path, dose_path = _receive(out, ct, plan, dose)
    (out / "notes.txt").write_text("not DICOM")
    with Catalog(out / "catalog.sqlite") as catalog:  # the catalog inside the folder: not scanned
        catalog.import_paths([plan_path, dose_path])
        catalog.mark_deleting([dose.SOPInstanceUID], "ARCHIVE@host:104")  # filed once ...
        catalog.mark_restored([dose.SOPInstanceUID])  # ... and restored: an archive holds it
        plan_path.unlink()
        dose_path.unlink()
        shutil.copyfile(pydicom_file("CT_small.dcm"), ct_path)  # other bytes than the row's
        catalog.import_paths([ct_path])
        ct_path.write_bytes(ct_path.read_bytes() + b"\0\0")  # replaced after its row was written

        report = reconcile_store(catalog, out)

        assert (report.indexed, report.refreshed, report.filed, report.forgotten) == (0, 1, 1, 1)
        assert report.skipped == [(out / "notes.txt").resolve()] and not report.conflicts
        assert _rows(catalog, out) == {ct_path.resolve(): InstanceState.LOCAL,
                                       dose_path.resolve(): InstanceState.FILED}
        row, = catalog.instances(ct.PatientID)
        assert row.size == ct_path.stat().st_size
        assert reconcile_store(catalog, out).changed is False  # a second run finds nothing


def test_a_copy_kept_beside_is_quarantined_as_a_conflicting_copy(tmp_path: Path) -> None:
    out = tmp_path / "rx"
    first = dcmread(pydicom_file("CT_small.dcm"))
    other = dcmread(pydicom_file("CT_small.dcm"))
    other.PatientName = "OTHER^CONTENT"
    kept, beside = _receive(out, first, other)
    assert beside == kept.with_name(f"{first.SOPInstanceUID}_2.dcm")
    with Catalog(tmp_path / "catalog.sqlite") as catalog:
        report = reconcile_store(catalog, out)
        assert report.indexed == 1 and report.conflicts == [beside.resolve()]
        (line,) = report.quarantined
        assert first.SOPInstanceUID in line and str(kept.resolve()) in line \
            and str(beside.resolve()) in line
        assert _rows(catalog, out) == {kept.resolve(): InstanceState.LOCAL}
        (aside,) = catalog.quarantined()
        assert (aside.path, aside.copy_of, aside.reason.value) == (
            beside.resolve(), kept.resolve(), "conflicting copy")
        assert reconcile_store(catalog, out).changed is False  # kept aside: not indexed again
    assert len(received_files(out)) == 2


def test_another_patients_study_is_quarantined_once_and_settled_when_gone(
        tmp_path: Path) -> None:
    out = tmp_path / "rx"
    own = dcmread(pydicom_file("CT_small.dcm"))
    intruder = dcmread(pydicom_file("CT_small.dcm"))
    intruder.SOPInstanceUID = generate_uid()
    intruder.PatientID = "ANOTHER-PATIENT"  # the same Study Instance UID
    _, aside = _receive(out, own, intruder)
    with Catalog(tmp_path / "catalog.sqlite") as catalog:
        report = reconcile_store(catalog, out)
        assert report.indexed == 2 and len(report.quarantined) == 1
        assert [q.path for q in catalog.quarantined()] == [aside.resolve()]
        assert reconcile_store(catalog, out).changed is False  # kept aside: not indexed again
        aside.unlink()
        assert reconcile_store(catalog, out).forgotten == 1
        assert catalog.quarantined() == []
