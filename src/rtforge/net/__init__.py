"""DICOM networking on pynetdicom."""
