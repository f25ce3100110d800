"""``bench/compare.py --quick``: the side-by-side report runs and keeps every row."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parents[1] / "bench" / "compare.py"

#: (task prefix, reference) of every row the report must have, measured or not.
ROWS = [
    ("reslice", "SimpleITK"),
    ("reslice", "scipy affine_transform"),
    ("batch", "pydicom + SimpleITK + pydicom"),
    ("DRR Siddon", "plastimatch drr -i exact"),
    ("DRR on the GPU", "PyTorch grid_sample"),
    ("DVH", "dicompyler-core"),
    ("contour reduction", "simplification (Rust)"),
    ("contour reduction", "shapely.simplify (GEOS)"),
    ("C-STORE", "dcmtk storescu"),
]


def test_compare_quick_prints_every_row() -> None:
    proc = subprocess.run([sys.executable, str(BENCH), "--quick"], capture_output=True, text=True,
                          timeout=300, check=False)
    assert proc.returncode == 0, proc.stderr[-2000:]
    lines = [line for line in proc.stdout.splitlines() if line.startswith("| ")]
    assert lines[0] == ("| task | rtforge | reference | ratio | memory-bandwidth bound | "
                        "accuracy |")
    body = [[cell.strip() for cell in line.strip("|").split(" | ")] for line in lines[1:]]
    assert all(len(cells) == 6 for cells in body), body
    for task, reference in ROWS:
        matches = [cells for cells in body
                   if cells[0].startswith(task) and cells[2].startswith(f"{reference}:")]
        assert len(matches) == 1, (task, reference, proc.stdout)
        cells = matches[0]
        # Either a measured time or the reason it was not measured; never an empty cell.
        assert cells[2].split(":", 1)[1].strip(), cells
    failed = [cells for cells in body if "failed:" in cells[2]]
    assert not failed, failed
