"""DICOM translation: series readers, IOD builders and parsers, file sets, UIDs."""
