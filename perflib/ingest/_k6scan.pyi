"""Types of the optional C extension built from ``_k6scan.c`` (its header comment is the spec)."""

#: One series: (metric_id, value_id or -1 per requested tag key, float64 values in file order,
#: latest sample time in ns, its line number, its value, Neumaier sum, its compensation).
Series = tuple[int, tuple[int, ...], bytes, int, int, float, float, float]

#: (lines read, Metric lines, Point metric names, distinct values per tag key, series,
#: earliest and latest Point time in ns, or None when there are no Points).
Scan = tuple[int, list[bytes], list[bytes], list[list[bytes]], list[Series], int | None, int | None]

def scan(fd: int, gz: bool, keys: tuple[bytes, ...], max_line: int) -> Scan | str:
    """k6 NDJSON from ``fd`` as per-series columns, or why the file is not in k6's line shape."""
