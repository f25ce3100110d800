"""Discovery of an archive's series (issue 2): this process alone, then with workers.

Generates ``--series`` oblique phantom series of ``--size``x``--size``x``--slices``
(default 20 x 128x128x200: 4000 files, headers dominating), then times
:func:`rtforge.io.series.discover_series` over them

- in this process alone (what ``rtforge batch --workers 1`` does);
- with ``--workers`` worker processes of the batch's forkserver sharing the
  files (what ``rtforge batch`` does for 2048 files or more), the workers
  started before the timing as they are, in the batch, while it imports.

Median of ``--repeat`` runs of each, interleaved, warm page cache; the two
results are checked to be equal.

Usage::

    python bench/bench_discovery.py [--series 20] [--size 128] [--slices 200] [--workers 2]
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

from compare_pipeline import _make_sources
from rtforge.io.series import discover_series
from rtforge.workflows._forkserver import start_forkserver


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--series", type=int, default=20)
    ap.add_argument("--size", type=int, default=128)
    ap.add_argument("--slices", type=int, default=200)
    ap.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--repeat", type=int, default=5)
    args = ap.parse_args()
    ctx = start_forkserver()
    with tempfile.TemporaryDirectory(prefix="rtforge-bench-") as work:
        root = Path(work) / "src"
        _make_sources(root, args.series, args.size, args.slices)
        files = sum(1 for _ in root.rglob("*.dcm"))
        alone, shared = [], []
        with ProcessPoolExecutor(max_workers=args.workers, mp_context=ctx) as pool:
            list(pool.map(abs, range(args.workers)))  # started, as in a batch by now
            for _ in range(args.repeat):
                t = time.perf_counter()
                a = discover_series(root, modalities={"CT"})
                alone.append(time.perf_counter() - t)
                t = time.perf_counter()
                b = discover_series(root, modalities={"CT"}, executor=pool)
                shared.append(time.perf_counter() - t)
                if a != b:
                    raise SystemExit("the two discoveries differ")
    one, many = statistics.median(alone), statistics.median(shared)
    print(f"{files} files, {args.series} series: this process alone {one:.3f} s "
          f"({files / one:.0f} files/s); with {args.workers} workers {many:.3f} s "
          f"({files / many:.0f} files/s, {one / many:.2f}x); median of {args.repeat}")


if __name__ == "__main__":
    main()
