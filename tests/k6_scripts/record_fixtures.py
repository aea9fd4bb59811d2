"""Re-record tests/fixtures/k6/: real k6 v1.1.0 outputs with k6's own summary beside them.

Run from the repository root: ``.venv/bin/python tests/k6_scripts/record_fixtures.py``.
The fixtures let the summary-equality tests run where k6 is absent (like asv/pyperf keep
recorded results). Kept small: a 1-second run of mixed.js, gzipped.
"""

from __future__ import annotations

import importlib.util
import shutil
import sys
import tempfile
import threading
from http.server import ThreadingHTTPServer
from pathlib import Path

HERE = Path(__file__).resolve().parent
DEST = HERE.parent / "fixtures" / "k6"


def main() -> int:
    spec = importlib.util.spec_from_file_location("test_k6", HERE.parent / "test_k6.py")
    assert spec and spec.loader
    harness = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(harness)
    server = ThreadingHTTPServer(("127.0.0.1", 0), harness._Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    DEST.mkdir(parents=True, exist_ok=True)
    try:
        with tempfile.TemporaryDirectory() as tmp:
            files = harness.run_k6_set(Path(tmp), f"http://127.0.0.1:{server.server_address[1]}")
            shutil.copyfile(files["mixed_gz"], DEST / "mixed.ndjson.gz")
            shutil.copyfile(files["mixed_export"], DEST / "mixed-export.json")
            shutil.copyfile(files["seg0"], DEST / "segment0.ndjson.gz")
            shutil.copyfile(files["seg0_export"], DEST / "segment0-export.json")
    finally:
        server.shutdown()
    for p in sorted(DEST.iterdir()):
        print(f"{p.stat().st_size:>8} {p}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
