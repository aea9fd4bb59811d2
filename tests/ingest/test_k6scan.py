"""The strict C reader behind a cold ``summarize`` (``perflib/ingest/_k6scan.c``).

Every number it produces is checked against an independent reading: Python's ``float`` for
values, integer arithmetic for times, and, for whole files, the DuckDB readers
(``PERFLIB_K6_FAST=0``) and k6's own end-of-test summary.
"""

from __future__ import annotations

import gzip
import json
import os
import shutil
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from perflib import ingest as k6
from perflib.ingest import fast as k6_fast
from perflib.ingest import scan as k6_scan
from perflib.ingest import summary as k6_summary

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "k6"
DATA_RUNS = Path(__file__).resolve().parents[2] / "data" / "runs"
SCANNER = k6.fast_reader()
needs_scanner = pytest.mark.skipif(SCANNER is None, reason="perflib.ingest._k6scan not built")


def point(
    metric: str = "m",
    time: str = "2026-01-01T00:00:00Z",
    value: str = "1",
    tags: str = '{"name":"a"}',
    extra: str = "",
) -> str:
    """A Point line exactly as k6 v1.x writes it."""
    return (
        f'{{"metric":"{metric}","type":"Point","data":{{"time":"{time}",'
        f'"value":{value},"tags":{tags}{extra}}}}}'
    )


def scan(
    tmp_path: Path,
    body: bytes | str,
    keys: tuple[str, ...] = ("name",),
    max_line: int = 1 << 20,
    gz: bool = False,
) -> Any:
    """The scanner on ``body`` (bytes as given: gzip them first for ``gz``)."""
    path = tmp_path / "scan.ndjson"
    path.write_bytes(body.encode() if isinstance(body, str) else body)
    fd = os.open(path, os.O_RDONLY)
    try:
        return SCANNER.scan(fd, gz, tuple(k.encode() for k in keys), max_line)
    finally:
        os.close(fd)


def test_the_fast_reader_is_built_here() -> None:
    """`make setup` compiles it (gcc is on every machine this project targets). Without it
    every summary would silently take the slower DuckDB reader, missing issue 4's target."""
    assert SCANNER is not None, "perflib.ingest._k6scan was not built: `pip install -e .` needs gcc"


def test_the_built_reader_is_not_stale() -> None:
    """The extension is optional, so a compile error in an edited _k6scan.c would leave the
    previous build in place, silently: the build must be newer than its source."""
    if SCANNER is None:
        pytest.skip("not built")
    source = Path(k6.__file__).with_name("_k6scan.c")
    if not source.exists():
        pytest.skip("an installed (not editable) perflib: no source beside the build")
    assert Path(SCANNER.__file__).stat().st_mtime >= source.stat().st_mtime, (
        "perflib.ingest._k6scan is older than perflib/ingest/_k6scan.c: rebuild with `make setup` "
        "(pip install -e . prints the compile error)"
    )


def test_perflib_k6_fast_0_turns_it_off(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PERFLIB_K6_FAST", "0")
    assert k6.fast_reader() is None


# --------------------------------------------------------------------------- fields


@needs_scanner
def test_values_are_exactly_pythons_float(tmp_path: Path) -> None:
    """Correctly rounded like CPython's float(): random doubles in four spellings, and the
    hard cases (Clinger's fast-path edges, subnormals, 20+ digit mantissas, overflow)."""
    rng = np.random.default_rng(4)
    bits = rng.integers(0, 2**63, 4000, dtype=np.int64).view(np.float64)
    doubles = [float(x) for x in bits if np.isfinite(x)]
    doubles += [float(x) for x in (*rng.lognormal(2, 3, 2000), *rng.normal(0, 1e6, 1000))]
    texts = [repr(x) for x in doubles]
    texts += [f"{x:.17g}" for x in doubles[-3000:]] + [f"{x:.6f}" for x in doubles[-3000:]]
    texts += [f"{x:E}" for x in doubles[-500:]]
    texts += ["0", "-0", "0.0", "-0.0", "1", "1e22", "1e23", "9007199254740992",
              "9007199254740993", "123456789012345678901234567890", "0.1", "1E-7", "-1.5e+300",
              "4.9e-324", "2.2250738585072011e-308", "1e400", "-1e400", "1e-400",
              "0.30000000000000004", "1.00000000000000000000000000001", "100000000000000000000000",
              "0.000000000000000000000000000000001", "17.000", "4.186448", "1e0", "5E+2", "7" * 300,
              "0." + "3" * 400, f"{1e300:.6f}"]  # fmt: skip
    texts = [t.replace("inf", "1e400") for t in texts]
    body = "".join(point(value=t) + "\n" for t in texts)
    lines, _, names, _, series, *_ = scan(tmp_path, body)
    assert lines == len(texts) and names == [b"m"] and len(series) == 1
    got = np.frombuffer(series[0][2], dtype=np.float64)
    want = np.array([float(t) for t in texts])
    bad = [t for t, g, w in zip(texts, got, want, strict=True) if g.tobytes() != w.tobytes()]
    assert not bad, bad[:10]  # bit for bit (-0.0 included)


@needs_scanner
def test_times_are_utc_nanoseconds_whatever_the_offset(tmp_path: Path) -> None:
    """Go's RFC3339Nano (trailing zeros trimmed, ``Z`` or ±HH:MM) → ns since the epoch, UTC.
    Each time gets its own name tag, so each series holds one sample and its time."""
    rng = np.random.default_rng(9)
    epoch = datetime(1970, 1, 1, tzinfo=UTC)
    offsets = [0, 330, -30, 840, -720, 345, 60, -59]
    expected: dict[str, int] = {}
    lines = []
    for i in range(3000):
        ns = int(rng.integers(-(2**62) // 2, 2**62))  # 1824 … 2116
        if i % 5 == 0:
            ns -= ns % 1_000_000_000  # whole seconds: no fraction written
        elif i % 5 == 1:
            ns -= ns % 1000  # trailing zeros trimmed
        off = offsets[i % len(offsets)]
        secs, frac = divmod(ns, 1_000_000_000)
        local = epoch + timedelta(seconds=secs, minutes=off)
        text = local.strftime("%Y-%m-%dT%H:%M:%S")
        if frac:
            text += "." + f"{frac:09d}".rstrip("0")
        text += (
            "Z"
            if off == 0 and i % 2
            else f"{'-' if off < 0 else '+'}{abs(off) // 60:02d}:{abs(off) % 60:02d}"
        )
        expected[f"t{i}"] = ns
        lines.append(point(time=text, tags=f'{{"name":"t{i}"}}'))
    n, _, _, values, series, t_min, t_max = scan(tmp_path, "\n".join(lines) + "\n")
    assert n == 3000 and len(series) == 3000
    got = {values[0][ids[0]].decode(): t for _, ids, _, t, *_ in series}
    assert got == expected
    assert (t_min, t_max) == (min(expected.values()), max(expected.values()))


@needs_scanner
def test_series_last_value_tags_and_escapes(tmp_path: Path) -> None:
    """A series is one metric × one combination of the requested tags (others ignored); its
    last value is the latest sample's, the later line winning a tie; escaped tag values come
    back raw, and decode to the same text as plain ones."""
    t = "2026-01-01T00:00:0{}Z"
    body = "".join(
        line + "\n"
        for line in [
            point("g", t.format(2), "5", '{"name":"a\\u0026b","url":"x"}'),
            point("g", t.format(1), "6", '{"url":"y","name":"a\\u0026b"}'),
            point("g", t.format(2), "7", '{"name":"a\\u0026b"}'),  # same time, later line
            point("g", t.format(3), "8", '{"name":"a&b","kind":"k"}'),
            point("g", t.format(0), "9", "null"),
            point("g", t.format(0), "1", "{}", ',"metadata":{"vu":"1","iter":"2"}'),
            point("h", t.format(4), "2", '{"kind":"k","name":"é \\"q\\" \\\\ 🚀"}', ',"metadata":null'),
        ]
    )  # fmt: skip
    lines, metric_lines, names, values, series, t_min, t_max = scan(
        tmp_path, body, keys=("name", "kind")
    )
    assert (lines, metric_lines, names) == (7, [], [b"g", b"h"])
    decoded = [[k6_scan._json_string(v) for v in vs] for vs in values]
    assert decoded == [["a&b", "a&b", 'é "q" \\ 🚀'], ["k"]]
    assert values[0][:2] == [b"a\\u0026b", b"a&b"]
    rows = {
        (names[m].decode(), *(decoded[j][i] if i >= 0 else None for j, i in enumerate(ids))): (
            list(np.frombuffer(blob)),
            last,
        )
        for m, ids, blob, _, _, last, *_ in series
    }
    assert rows == {
        ("g", "a&b", None): ([5.0, 6.0, 7.0], 7.0),
        ("g", "a&b", "k"): ([8.0], 8.0),
        ("g", None, None): ([9.0, 1.0], 1.0),
        ("h", 'é "q" \\ 🚀', "k"): ([2.0], 2.0),
    }
    assert t_min == 1767225600 * 10**9 and t_max == t_min + 4 * 10**9


@needs_scanner
def test_metric_lines_are_returned_whole_in_file_order(tmp_path: Path) -> None:
    decl = '{"type":"Metric","data":{"name":"m","type":"trend","contains":"time","thresholds":[],"submetrics":null},"metric":"m"}'
    got = scan(tmp_path, f"{decl}\n{point()}\n{decl}\n")
    assert got[0] == 3 and got[1] == [decl.encode()] * 2


@pytest.mark.parametrize(
    ("body", "why"),
    [
        (point() + "\n\n", "line 2: not a k6 Point or Metric line"),
        (point() + "\r\n", "line 1: unexpected bytes after tags"),
        (point() + "\n" + point(), "line 2: the last line is unterminated"),
        (point().replace('"value":', '"value": '), "the value is not a JSON number"),
        (point().replace('{"metric":"m","type":"Point"', '{"type":"Point","metric":"m"'), "not a k6 Point or Metric line"),
        (point().replace(',"type":"Point"', ',"type":"Pointe"'), "not a Point line"),
        (point(metric=""), "the metric name is empty"),
        (point(metric="a\\u0041"), "the metric name is empty or not a plain JSON string"),
        (point(time="2026-02-30T00:00:00Z"), "the time is not RFC 3339"),
        (point(time="2026-01-01 00:00:00Z"), "the time is not RFC 3339"),
        (point(time="2026-01-01T00:00:00+0530"), "the time is not RFC 3339"),
        (point(time="2026-01-01T00:00:00.Z"), "the time is not RFC 3339"),
        (point(time="2026-01-01T00:00:00.1234567891Z"), "the time is not RFC 3339"),
        (point(time="2026-01-01T00:00:00"), "the time is not RFC 3339"),
        (point(time="1600-01-01T00:00:00Z"), "the time is not RFC 3339"),
        (point(time="2026-01-01T24:00:00Z"), "the time is not RFC 3339"),
        (point(value='"1"'), "the value is not a JSON number"),
        (point(value="null"), "the value is not a JSON number"),
        (point(value="NaN"), "the value is not a JSON number"),
        (point(value="01"), "expected \"tags\" after \"value\""),
        (point(value="1."), "the value is not a JSON number"),
        (point(value=".5"), "the value is not a JSON number"),
        (point(value="-"), "the value is not a JSON number"),
        (point(value="1e"), "the value is not a JSON number"),
        (point(tags='{"name":1}'), "a tag value is not a JSON string"),
        (point(tags='{"na\\u006de":"a"}'), "a tag key is not a plain JSON string"),
        (point(tags='{"name":"a","name":"b"}'), "a tag key appears twice"),
        (point(tags='{"name":"a\\x"}'), "a tag value is not a valid JSON string"),
        (point(tags='{"name":"a\\u12"}'), "a tag value is not a valid JSON string"),
        (point(tags='{"name":"a\tb"}'), "a tag value is not a valid JSON string"),
        (point(tags='{"name":"a";}'), "expected , or } in tags"),
        (point(tags='[]'), "tags/metadata are not an object or null"),
        (point(extra=',"metadata":{"vu":1}'), "a tag value is not a JSON string"),
        (point(extra=',"other":1'), "unexpected bytes after tags"),
        (point() + " ", "unexpected bytes after tags"),
    ],
)  # fmt: skip
@needs_scanner
def test_anything_but_k6s_exact_shape_is_handed_over_with_the_reason(
    tmp_path: Path, body: str, why: str
) -> None:
    got = scan(tmp_path, body if body.endswith("\n") or "unterminated" in why else body + "\n")
    assert isinstance(got, str) and why in got, got
    assert got.startswith("line ")


@needs_scanner
def test_bytes_that_are_not_utf8_or_too_long_are_handed_over(tmp_path: Path) -> None:
    bad = point(tags='{"url":"\xff"}').encode("latin-1") + b"\n"
    assert "line 1: a tag value is not a valid JSON string" in scan(tmp_path, bad)
    surrogate = point(tags='{"url":"x"}').encode().replace(b'"x"', b'"\xed\xa0\x80"') + b"\n"
    assert "line 1: a tag value" in scan(tmp_path, surrogate)
    overlong = point(tags='{"url":"x"}').encode().replace(b'"x"', b'"\xc0\xaf"') + b"\n"
    assert "line 1: a tag value" in scan(tmp_path, overlong)
    ok = point(tags='{"url":"ø€🚀"}') + "\n"
    assert not isinstance(scan(tmp_path, ok), str)
    long = (point() + "\n") * 3 + point(tags='{"url":"' + "x" * 200 + '"}') + "\n"
    assert "line 4: longer than" in scan(tmp_path, long, max_line=128)


@needs_scanner
def test_gzip_is_inflated_member_after_member_and_defects_handed_over(tmp_path: Path) -> None:
    body = "".join(point(value=str(i), tags=f'{{"name":"n{i % 7}"}}') + "\n" for i in range(5000))
    plain = scan(tmp_path, body)
    data = body.encode()
    one = gzip.compress(data)
    members = gzip.compress(data[:77_777]) + gzip.compress(data[77_777:])
    assert scan(tmp_path, one, gz=True) == plain
    assert scan(tmp_path, members, gz=True) == plain
    assert plain[0] == 5000 and sum(len(s[2]) for s in plain[4]) == 5000 * 8
    assert "gzip stream stops early" in scan(tmp_path, one[: len(one) // 2], gz=True)
    assert "gzip stream stops early" in scan(tmp_path, one[:-4], gz=True)  # trailer cut
    corrupt = one[:200] + bytes(b ^ 0x55 for b in one[200:260]) + one[260:]
    assert "gzip stream is corrupt" in scan(tmp_path, corrupt, gz=True)
    assert "gzip stream is corrupt" in scan(tmp_path, one + b"junk", gz=True)


# --------------------------------------------------------------------------- whole files


def recorded_files(tmp_path: Path) -> list[Path]:
    """Real k6 v1.1.0 outputs, plain: the test fixtures and the recorded sample runs."""
    out = []
    sources = sorted(FIXTURES.glob("*.ndjson.gz")) + sorted(DATA_RUNS.glob("*/k6*.ndjson.gz"))
    for i, src in enumerate(sources):
        dest = tmp_path / f"{i}-{src.parent.name}-{src.name.removesuffix('.gz')}"
        dest.write_bytes(gzip.decompress(src.read_bytes()))
        out.append(dest)
    assert len(out) >= 6
    return out


def assert_same_summary(mine: dict[str, Any], ref: dict[str, Any]) -> None:
    """Same entries, lines and warnings; statistics equal to the last few ulps (sums and
    interpolations are rounded in another order)."""
    assert list(mine["metrics"]) == list(ref["metrics"])
    assert mine["lines"] == ref["lines"] and mine["warnings"] == ref["warnings"]
    for name, stats in ref["metrics"].items():
        assert mine["metrics"][name] == pytest.approx(stats, rel=1e-12, abs=1e-15), name


@needs_scanner
def test_fast_summary_equals_the_duckdb_readers_and_k6(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for path in recorded_files(tmp_path):
        monkeypatch.setenv("PERFLIB_K6_FAST", "0")
        ref = k6.summarize(path, cache=False)
        monkeypatch.delenv("PERFLIB_K6_FAST")
        direct = k6_summary._direct_summary
        with monkeypatch.context() as m:  # the fast reader really is the one used
            m.setattr(k6_summary, "_direct_summary", lambda *a: pytest.fail("DuckDB reader used"))
            m.setattr(k6_summary, "_parse_into", lambda *a, **kw: pytest.fail("DuckDB reader used"))
            mine = k6.summarize(path, cache=False)
        assert k6_summary._direct_summary is direct
        assert_same_summary(mine, ref)
        assert mine["lines"]["skipped"] == 0 and mine["lines"]["parsed"] > 0
    mixed = tmp_path / "0-k6-mixed.ndjson"
    assert mixed.exists()
    export = k6.read_summary_export(FIXTURES / "mixed-export.json")
    mine = k6.summarize(mixed, cache=False)
    for name, stats in export.items():
        for key, want in stats.items():
            if key != "rate" or "count" not in stats:  # counter rates: run clock vs span
                assert mine["metrics"][name][key] == pytest.approx(want, rel=1e-9), (name, key)


@needs_scanner
def test_gzip_and_segments_take_the_fast_reader_too(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Recorded gzip files and a list of files (execution segments: merged, counts add up)
    give what the DuckDB readers give, and the fast reader is the one used."""
    files = [FIXTURES / "mixed.ndjson.gz", FIXTURES / "segment0.ndjson.gz"]
    plain = tmp_path / "mixed.ndjson"
    plain.write_bytes(gzip.decompress(files[0].read_bytes()))
    for source in ([files[0]], [files[1]], files, [plain, files[1]]):
        copies = []
        for i, src in enumerate(source):
            copies.append(tmp_path / f"{len(source)}-{i}-{src.name}")
            shutil.copyfile(src, copies[-1])
        assert k6_fast._fast_summary(copies) is not None
        mine = k6.summarize(copies, cache=False)
        monkeypatch.setenv("PERFLIB_K6_FAST", "0")
        assert_same_summary(mine, k6.summarize(copies, cache=False))
        monkeypatch.delenv("PERFLIB_K6_FAST")
    parts = [k6.summarize(f, cache=False)["metrics"]["http_reqs"]["count"] for f in files]
    assert mine["metrics"]["http_reqs"]["count"] == sum(parts)


def _variants(body: bytes) -> dict[str, bytes]:
    """k6 output altered in ways the strict reader must hand over to DuckDB's."""
    lines = body.split(b"\n")
    obj = json.loads(lines[5])
    return {
        "cut last line": body[:-40],
        "blank line": b"\n".join([*lines[:9], b"", *lines[9:]]),
        "crlf": body.replace(b"\n", b"\r\n"),
        "re-serialised line": b"\n".join([*lines[:5], json.dumps(obj).encode(), *lines[6:]]),
        "junk line": body + b"not json\n",
        "bad utf-8 in a tag": body.replace(b'"proto":"HTTP/1.1"', b'"proto":"HTTP/\xff"', 1),
        "late sub-metric on an unread tag": body
        * (1 + (3 << 19) // len(body))  # past the head
        + b'{"type":"Metric","data":{"name":"late","type":"counter","contains":"default",'
        b'"thresholds":[],"submetrics":[{"name":"late{zone:eu}","suffix":"zone:eu",'
        b'"tags":{"zone":"eu"}}]},"metric":"late"}\n'
        + point("late", "2026-11-26T18:12:53Z", "3", '{"zone":"eu"}').encode()
        + b"\n",
    }


@needs_scanner
@pytest.mark.parametrize("variant", list(_variants(b"\n".join([b"{}"] * 12))))
def test_handed_over_files_lose_nothing(
    variant: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Whatever the strict reader refuses, the DuckDB readers read with their line
    accounting: the summary is the one ``PERFLIB_K6_FAST=0`` gives."""
    body = gzip.decompress((FIXTURES / "mixed.ndjson.gz").read_bytes())
    path = tmp_path / "k6.ndjson"
    path.write_bytes(_variants(body)[variant])
    assert k6_fast._fast_summary([path]) is None
    mine = k6.summarize(path, cache=False)
    monkeypatch.setenv("PERFLIB_K6_FAST", "0")
    assert mine == k6.summarize(path, cache=False)
    if variant == "late sub-metric on an unread tag":
        assert mine["metrics"]["late{zone:eu}"]["count"] == 3
    else:
        assert mine["lines"]["skipped"] >= (variant not in ("crlf", "re-serialised line"))


@needs_scanner
def test_escaped_and_unicode_names_split_like_duckdb(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``a\\u0026b`` and ``a&b`` are one endpoint; a sub-metric on an escaped value matches."""
    decl = (
        '{"type":"Metric","data":{"name":"http_req_duration","type":"trend","contains":"time",'
        '"thresholds":["p(95)<1"],"submetrics":[{"name":"http_req_duration{name:a&b}",'
        '"suffix":"name:a&b","tags":{"name":"a&b"}}]},"metric":"http_req_duration"}'
    )
    rng = np.random.default_rng(3)
    spellings = ['"a\\u0026b"', '"a&b"', '"ø/\\"x\\""', '"🚀"']
    lines = [decl] + [
        point("http_req_duration", f"2026-11-26T18:12:{i % 60:02d}.{i:03d}+01:00",
              repr(float(v)), f'{{"name":{spellings[i % 4]},"status":"200"}}')
        for i, v in enumerate(rng.lognormal(3, 1, 800))
    ]  # fmt: skip
    path = tmp_path / "names.ndjson"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    assert k6_fast._fast_summary([path]) is not None
    mine = k6.summarize(path, cache=False)
    monkeypatch.setenv("PERFLIB_K6_FAST", "0")
    assert_same_summary(mine, k6.summarize(path, cache=False))
    assert mine["metrics"]["http_req_duration{name:a&b}"]["count"] == 400
    assert mine["metrics"]['http_req_duration{name:ø/"x"}']["count"] == 200
    assert mine["metrics"]["http_req_duration{name:🚀}"]["count"] == 200


@needs_scanner
@pytest.mark.parametrize("names", [k6.MAX_NAME_SPLITS, k6.MAX_NAME_SPLITS + 1])
def test_name_split_limit_counts_named_samples_only(
    names: int, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """At the limit (samples without a name tag besides), the splits are all there; past it,
    none, with the warning: as the DuckDB readers decide."""
    rows = [point("http_req_duration", value=str(i + 1), tags=f'{{"name":"/e{i}"}}')
            for i in range(names)] + [point("http_req_duration", value="7", tags="null")]  # fmt: skip
    path = tmp_path / "names.ndjson"
    path.write_text("\n".join(rows) + "\n", encoding="utf-8")
    mine = k6.summarize(path, cache=False)
    monkeypatch.setenv("PERFLIB_K6_FAST", "0")
    assert_same_summary(mine, k6.summarize(path, cache=False))
    splits = [m for m in mine["metrics"] if m.startswith("http_req_duration{name:")]
    assert len(splits) == (names if names <= k6.MAX_NAME_SPLITS else 0)
    assert mine["metrics"]["http_req_duration"]["count"] == names + 1


@needs_scanner
def test_cli_summarize_uses_it_and_caches(tmp_path: Path) -> None:
    """The whole CLI on a plain copy of a real run: same JSON as the DuckDB reader's."""
    import subprocess
    import sys

    src = tmp_path / "k6.ndjson"
    src.write_bytes(gzip.decompress((FIXTURES / "segment0.ndjson.gz").read_bytes()))
    cmd = [sys.executable, "-m", "perflib", "summarize", "--json", str(src)]
    fast = subprocess.run(cmd, capture_output=True, text=True, check=True)
    assert (k6.cache_dir(src) / "summary.json").exists()
    shutil.rmtree(k6.cache_dir(src))
    env = {**os.environ, "PERFLIB_K6_FAST": "0"}
    slow = subprocess.run(cmd, capture_output=True, text=True, check=True, env=env)
    assert_same_summary(json.loads(fast.stdout), json.loads(slow.stdout))
    assert fast.stderr == slow.stderr == ""
