"""Differential fuzzing of the strict C reader (``perflib/ingest/_k6scan.c``) against DuckDB's.

Small files cut from the real k6 fixtures are mutated at random (``random.Random`` seeded per
case, so every run reads the same files): byte flips, insertions, deletions and cuts, tag values
with JSON escapes, unicode and invalid UTF-8, numbers and RFC 3339 times in many spellings
(valid or not), CRLF, blank lines, duplicated keys, extra spaces, gzip (several members, cut or
corrupt). The fast reader must either read a file exactly or hand it over, so ``summarize``
must give with it what ``PERFLIB_K6_FAST=0`` (the DuckDB readers) gives: the same entries in
the same order, the same line accounting and warnings, statistics equal to rounding, the same
K6InputError. The scanner alone must read a file, a pipe and gzip alike, across its read
buffer's boundary. The differences this found are fixed; each keeps its minimal reproducer as
a test at the end. One known difference is left, as a strict xfail: tied gauge samples.
"""

from __future__ import annotations

import gzip
import json
import os
import random
import re
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from perflib import ingest as k6
from tests.ingest.test_k6scan import FIXTURES, SCANNER, needs_scanner, point, scan

#: How many mutated files (each summarised twice): ~20 ms each with DuckDB, ~10 s in all.
N_CASES = 200


def _fixture_lines(name: str) -> list[bytes]:
    return gzip.decompress((FIXTURES / name).read_bytes()).split(b"\n")[:-1]


SOURCES = [_fixture_lines("mixed.ndjson.gz"), _fixture_lines("segment0.ndjson.gz")]
METRIC_PREFIX = b'{"type":"Metric",'

# --------------------------------------------------------------------------- field spellings

#: Pieces of tag values: plain, escaped (\\u0026 is "&", \\u0073low is "slow", a sub-metric's
#: filter), raw unicode, JSON-special characters.
GOOD_PIECES = [
    b"a", b"slow", b"api", b"browse", b"item", b"x", b"200", b"404", b"/", b" ", b"::outer",
    b"\\u0026", b'\\"', b"\\\\", b"\\/", b"\\n", b"\\t", b"\\r", b"\\b", b"\\f", b"\\u00e9",
    b"\\u0073low", b"\\u0061pi", b"\\uD83D\\uDE80", b"\\u0000", b"\\u001F", b"\\uFFFF",
    "é".encode(), "🚀".encode(), "€".encode(), "中".encode(), "\u2028".encode(), b"\x7f",
    b"{", b"}", b":", b",", b"'", b"%",
]  # fmt: skip
#: Bytes no JSON string may hold (invalid UTF-8, control bytes, bad escapes).
BAD_PIECES = [
    b"\xff", b"\xc0\xaf", b"\xed\xa0\x80", b"\xe2\x82", b"\xf4\x90\x80\x80", b"\xf8\x88\x80\x80",
    b"\x80", b"\x01", b"\t", b"\\x", b"\\u12", b"\\U0041", b"\\'",
]  # fmt: skip
#: Escapes of unpaired UTF-16 surrogates: not text, so both readers refuse the line.
LONE_SURROGATES = [b"\\ud800", b"\\udc00", b"\\uD83D\\u0041", b"\\uDE80\\uD83D"]

INVALID_NUMBERS = [
    "01", "-01", "00", "-", "+1", ".5", "1.", "1e", "1e+", "1E-", "0x10", "NaN", "Infinity",
    "-Infinity", "1_000", '"1"', "true", "null", "1.5.2", "--1", "1e5.5", "- 1", "1 ", "١",
]  # fmt: skip
TAG_KEYS = rb"name|url|status|scenario|group|expected_response|method|proto|kind|check|flow"
TAG_RE = re.compile(rb'"(' + TAG_KEYS + rb')":"((?:[^"\\]|\\.)*)"')
VALUE_RE = re.compile(rb'"value":([^,}]*)')
TIME_RE = re.compile(rb'"time":"([^"]*)"')


def _double(rng: random.Random) -> float:
    pick = rng.randrange(7)
    sign = rng.choice((1, -1)) if rng.random() < 0.3 else 1
    if pick == 0:
        return 0.0
    if pick == 1:
        return sign * float(rng.randint(0, 10**6))
    if pick == 2:
        return sign * rng.lognormvariate(0, 4)
    if pick == 3:  # any magnitude, subnormals included
        return sign * 10 ** rng.uniform(-324, 308.2)
    if pick == 4:
        bits = np.frombuffer(rng.getrandbits(64).to_bytes(8, "little"), np.float64)[0]
        return float(bits) if np.isfinite(bits) else 1.5
    if pick == 5:
        return sign * rng.uniform(0, 1)
    return sign * float(rng.randint(2**52, 2**54))


def number(rng: random.Random, bad: bool = False) -> bytes:
    """A JSON number in one of many spellings (``bad``: something that is not one)."""
    if bad:
        return rng.choice(INVALID_NUMBERS).encode()
    if rng.random() < 0.1:
        return rng.choice(
            ["0", "-0", "0.0", "-0.0", "0e0", "-0E-0", "0.000000", "0e+999", "-0.0e-400",
             "1e-400", "4.9e-324", "2.5e-324", "1.7976931348623157e308", "1e23",
             "9007199254740993", "123456789012345678901234567890", "1" + "0" * 40,
             "0." + "0" * 30 + "1", "1." + "9" * 40, "7" * 300, "0." + "3" * 400]
        ).encode()  # fmt: skip
    x = _double(rng)
    style = rng.randrange(8)
    if style == 0:
        text = repr(x)
    elif style == 1:
        text = f"{x:.{rng.randint(1, 25)}g}"
    elif style == 2:
        text = f"{x:.{rng.randint(0, 20)}{rng.choice('eE')}}"
        mant, exp = re.split("[eE]", text)
        e = int(exp)
        sign = "-" if e < 0 else rng.choice(("+", ""))
        text = f"{mant}{text[len(mant)]}{sign}{abs(e):0{rng.randint(1, 5)}d}"
    elif style == 3 and abs(x) < 1e30:
        text = f"{x:.{rng.randint(0, 30)}f}"
    elif style == 4:  # a long mantissa: more digits than a double holds
        text = f"{x:.17e}"
        mant, exp = text.split("e")
        text = (
            mant
            + "".join(rng.choice("0123456789") for _ in range(rng.randint(1, 40)))
            + ("e" + exp)
        )
    elif style == 5:
        text = str(rng.randint(-(10**25), 10**25))
    else:
        text = repr(x)
    return text.encode()  # may overflow to ±inf (1e400): both readers say inf


def _days(y: int, m: int) -> int:
    if m == 2:
        return 29 if (y % 4 == 0 and y % 100 != 0) or y % 400 == 0 else 28
    return 30 if m in (4, 6, 9, 11) else 31


def rfc3339(rng: random.Random, bad: bool = False) -> bytes:
    """A time as k6 writes it (any offset, 0-9 fraction digits); ``bad``: with one defect
    (a year datetime64[ns] cannot hold, an impossible date or clock, 10 fraction digits, a
    malformed offset or separator)."""
    y = rng.choice([2026, 2026, 2026, 2000, 1970, 1900, 2100, 1678, 2261, 2024])
    mo = rng.randint(1, 12)
    d, h, mi, s = rng.randint(1, _days(y, mo)), rng.randint(0, 23), rng.randint(0, 59), 0
    s = rng.randint(0, 59)
    n = rng.choice((0, 0, 1, 2, 3, 6, 9, 9, 9, rng.randint(0, 9)))
    sep, frac = "T", "." if n else ""
    offset = "Z"
    if rng.random() < 0.6:
        oh, om = rng.randint(0, 14), rng.choice((0, 0, 30, 45, rng.randint(0, 59)))
        offset = f"{rng.choice('+-')}{oh:02d}:{om:02d}"
    defect = rng.randrange(11) if bad else -1
    if defect == 0:
        y = rng.choice((1677, 2262, 999, 1066))
    elif defect == 1:
        mo = rng.choice((0, 13))
    elif defect == 2:
        d = rng.choice((0, _days(y, mo) + 1, 32))
    elif defect == 3:
        mo, d = 2, 29 + (_days(y, 2) == 29)
    elif defect == 4:
        h, mi, s = rng.choice(((24, mi, s), (h, 60, s), (h, mi, 60)))
    elif defect == 5:
        n = 10
    elif defect == 6:
        frac, n = ".", 0
    elif defect == 7:
        offset = rng.choice(["z", "", "+0530", "+05", "+5:30", "UTC", " Z", "+05:30Z"])
    elif defect == 8:
        offset = f"{rng.choice('+-')}{rng.choice((24, 99, 5))}:{rng.choice((60, 0))}"
    elif defect == 9:
        sep = rng.choice(" t_")
    text = f"{y:04d}-{mo:02d}-{d:02d}{sep}{h:02d}:{mi:02d}:{s:02d}"
    if defect == 10:
        text = rng.choice([text[:-3], text[1:], text.replace("-", "/"), text + ":00"])
    text += frac + "".join(rng.choice("0123456789") for _ in range(n)) + offset
    return text.encode()


def string_body(rng: random.Random, bad: bool = False) -> bytes:
    """The body of a JSON string (between its quotes); ``bad``: with bytes no JSON string
    may hold."""
    parts = [rng.choice(GOOD_PIECES) for _ in range(rng.choice((0, 1, 1, 2, 3, 5)))]
    if bad:
        parts.insert(rng.randint(0, len(parts)), rng.choice(BAD_PIECES + LONE_SURROGATES))
    return b"".join(parts)


# --------------------------------------------------------------------------- mutations


def _points(lines: list[bytes]) -> list[int]:
    return [i for i, line in enumerate(lines) if line.startswith(b'{"metric":')]


def _resub(rng: random.Random, regex: re.Pattern[bytes], line: bytes, new: bytes) -> bytes:
    """``line`` with the group 1 (or 2) of one random match of ``regex`` replaced by ``new``."""
    found = list(regex.finditer(line))
    if not found:
        return line
    m = rng.choice(found)
    g = regex.groups
    return line[: m.start(g)] + new + line[m.end(g) :]


def _mutate_field(
    rng: random.Random, lines: list[bytes], regex: re.Pattern[bytes], make: Any
) -> None:
    """New spellings of one field in 1-8 Point lines; one of them bad, one time in five."""
    chosen = rng.sample(_points(lines), min(len(_points(lines)), rng.randint(1, 8)))
    bad = rng.choice(chosen) if chosen and rng.random() < 0.2 else -1
    for i in chosen:
        lines[i] = _resub(rng, regex, lines[i], make(rng, bad=i == bad))


def mut_values(rng: random.Random, lines: list[bytes]) -> None:
    _mutate_field(rng, lines, VALUE_RE, number)


def mut_times(rng: random.Random, lines: list[bytes]) -> None:
    _mutate_field(rng, lines, TIME_RE, rfc3339)


def mut_tags(rng: random.Random, lines: list[bytes]) -> None:
    _mutate_field(rng, lines, TAG_RE, string_body)


def mut_bytes(rng: random.Random, lines: list[bytes]) -> None:
    """Byte flips, insertions and deletions anywhere (newlines included)."""
    body = bytearray(b"\n".join(lines))
    for _ in range(rng.randint(1, 4)):
        if not body:
            break
        at = rng.randrange(len(body))
        op = rng.randrange(3)
        if op == 0:
            body[at] ^= 1 << rng.randrange(8) if rng.random() < 0.5 else rng.randint(1, 255)
        elif op == 1:
            body[at:at] = rng.choice(
                [b'"', b"\\", b"{", b"}", b",", b":", b" ", b"\n", b"\r", b"0", b"e", b"-", b".",
                 b"\xff", b"\xc3", bytes([rng.randrange(256)])]
            )  # fmt: skip
        else:
            del body[at : at + rng.randint(1, 5)]
    lines[:] = bytes(body).split(b"\n")


def mut_structure(rng: random.Random, lines: list[bytes]) -> None:
    """CRLF, blank or whitespace lines, spaces inside a line, a duplicated or dropped line."""
    for _ in range(rng.randint(1, 3)):
        i = rng.randrange(len(lines))
        op = rng.randrange(6)
        if op == 0:
            lines[i] += b"\r"
        elif op == 1:
            lines.insert(i, rng.choice([b"", b" ", b"\t", b"\r", b"  \t"]))
        elif op == 2:
            seps = [m.end() for m in re.finditer(rb"[:,{\[]", lines[i])] + [0, len(lines[i])]
            at = rng.choice(seps)
            lines[i] = lines[i][:at] + rng.choice([b" ", b"\t", b"  "]) + lines[i][at:]
        elif op == 3:
            lines.insert(i, lines[i])
        elif op == 4:
            del lines[i]
            if not lines:
                lines.append(b"")
        else:
            lines[:] = [line + b"\r" for line in lines]


def mut_duplicate_keys(rng: random.Random, lines: list[bytes]) -> None:
    """A key twice in an object: tags, data, the line itself or a Metric declaration."""
    for _ in range(rng.randint(1, 2)):
        i = rng.randrange(len(lines))
        line = lines[i]
        if line.startswith(METRIC_PREFIX):
            edits = [
                (b'"type":"trend"', b'"type":"counter","type":"trend"'),
                (b'"type":"counter"', b'"type":"counter","type":"gauge"'),
                (b'"contains":"time"', b'"contains":"time","contains":"default"'),
                (b'"submetrics":null', b'"submetrics":null,"submetrics":[]'),
                (b'{"type":"Metric",', b'{"type":"Metric","type":"Metric",'),
            ]
        else:
            tag = rng.choice([b"name", b"url", b"status", b"scenario", b"kind", b"other"])
            edits = [
                (b'"tags":{', b'"tags":{"' + tag + b'":"' + string_body(rng) + b'",'),
                (b'"}}}', b'","' + tag + b'":"' + string_body(rng) + b'"}}}'),
                (b'"tags":{', b'"tags":null,"tags":{'),
                (b',"type":"Point"', b',"type":"Point","type":"Point"'),
                (b'"data":{"time"', b'"data":{"value":0,"time"'),
                (b'{"metric":', b'{"metric":"dup","metric":'),
            ]
        old, new = rng.choice(edits)
        lines[i] = line.replace(old, new, 1)


MUTATIONS = {
    "values": mut_values,
    "times": mut_times,
    "tags": mut_tags,
    "bytes": mut_bytes,
    "structure": mut_structure,
    "dupkeys": mut_duplicate_keys,
}

WEIGHTS = {"values": 4, "times": 3, "tags": 4}


def _window(rng: random.Random, declared: bool = False) -> list[bytes]:
    """A few consecutive lines of a real run, after the Metric lines that came before them
    (k6 declares a metric just before its first sample): sometimes without them."""
    src = rng.choice(SOURCES)
    n = rng.randint(3, 40)
    start = rng.randrange(len(src) - n)
    decls = []
    if declared or rng.random() < 0.85:
        decls = list(dict.fromkeys(x for x in src[:start] if x.startswith(METRIC_PREFIX)))
    return decls + src[start : start + n]


def gzip_variant(rng: random.Random, body: bytes) -> tuple[bytes, str]:
    """``body`` gzip-compressed: one or several members, sometimes cut or damaged."""
    if rng.random() < 0.3 and len(body) > 2:
        cut = rng.randrange(1, len(body))
        data = gzip.compress(body[:cut], mtime=0) + gzip.compress(body[cut:], mtime=0)
        kind = "gz-members"
    else:
        data, kind = gzip.compress(body, mtime=0, compresslevel=rng.randint(1, 9)), "gz"
    r = rng.random()
    if r < 0.15:
        data, kind = data[: rng.randrange(2, len(data))], kind + "-cut"
    elif r < 0.25:
        at = rng.randrange(10, len(data))
        data = data[:at] + bytes([data[at] ^ rng.randint(1, 255)]) + data[at + 1 :]
        kind += "-flip"
    elif r < 0.3:
        data, kind = data + rng.choice([b"junk", b"\0" * 8, b"\x1f\x8b"]), kind + "-trailing"
    elif r < 0.35:
        empty = gzip.compress(b"", mtime=0)
        data, kind = empty + data + empty, kind + "-empty"
    return data, kind


@dataclass
class Case:
    id: str
    files: list[bytes]


def make_case(i: int, mutations: dict[str, Any] = MUTATIONS) -> Case:
    """The i-th fuzzed input: one file (sometimes two segments), 1-3 mutations applied.

    A second segment may lack the declarations (k6 declares in each; the readers cope)."""
    rng = random.Random(f"k6scan-fuzz-{i}")
    files, kinds = [], []
    segments = 2 if rng.random() < 0.08 else 1
    for _ in range(segments):
        lines = _window(rng, declared=segments > 1 and rng.random() < 0.7)
        names = sorted(mutations)
        # Mostly mutations that keep k6's line shape, so the fast reader reads the file.
        weights = [WEIGHTS.get(name, 1) for name in names]
        for name in dict.fromkeys(rng.choices(names, weights, k=rng.choice((1, 1, 2, 3)))):
            mutations[name](rng, lines)
            kinds.append(name)
        body = b"\n".join(lines) + (b"\n" if rng.random() < 0.96 else b"")
        if rng.random() < 0.03:
            body = body[: rng.randrange(len(body) + 1)]
            kinds.append("cut")
        if rng.random() < 0.25:
            body, kind = gzip_variant(rng, body)
            kinds.append(kind)
        files.append(body)
    return Case(f"{i:03d}-{'+'.join(kinds)}", files)


# --------------------------------------------------------------------------- the comparison


def _summary(paths: list[Path], monkeypatch: pytest.MonkeyPatch, fast: bool) -> Any:
    """``summarize`` with the fast reader on or off: the summary, or the exception raised."""
    if fast:
        monkeypatch.delenv("PERFLIB_K6_FAST", raising=False)
    else:
        monkeypatch.setenv("PERFLIB_K6_FAST", "0")
    try:
        return k6.summarize(paths if len(paths) > 1 else paths[0], cache=False)
    except Exception as exc:  # compared by the caller: the same error from both readers
        return exc
    finally:
        monkeypatch.delenv("PERFLIB_K6_FAST", raising=False)


def assert_same_outcome(mine: Any, ref: Any) -> None:
    """The same exception (type and message), or the same summary: entries in the same
    order, lines and warnings equal, statistics equal to rounding (sums and interpolations
    are rounded in another order)."""
    if isinstance(ref, Exception) or isinstance(mine, Exception):
        assert (type(mine), str(mine)) == (type(ref), str(ref))
        assert isinstance(ref, k6.K6InputError), f"the DuckDB readers crashed: {ref!r}"
        return
    assert list(mine["metrics"]) == list(ref["metrics"])
    assert mine["lines"] == ref["lines"]
    assert mine["warnings"] == ref["warnings"]
    for name, stats in ref["metrics"].items():
        assert mine["metrics"][name] == pytest.approx(stats, rel=1e-12, nan_ok=True), name


def write_files(tmp_path: Path, files: list[bytes]) -> list[Path]:
    paths = []
    for j, body in enumerate(files):
        paths.append(tmp_path / f"k6-{j}.ndjson")
        paths[-1].write_bytes(body)
    return paths


def check(files: list[bytes], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    paths = write_files(tmp_path, files)
    ref = _summary(paths, monkeypatch, fast=False)
    mine = _summary(paths, monkeypatch, fast=True)
    assert_same_outcome(mine, ref)


CASES = [make_case(i) for i in range(N_CASES)]


@needs_scanner
@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_fast_reader_agrees_with_the_duckdb_readers(
    case: Case, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    check(case.files, tmp_path, monkeypatch)


# --------------------------------------------------------------------------- the scanner alone


def scan_bytes(
    body: bytes,
    tmp_path: Path,
    *,
    gz: bool = False,
    pipe: bool = False,
    max_line: int = 1 << 20,
    keys: tuple[bytes, ...] = (b"name", b"status", b"scenario"),
) -> Any:
    """``scan`` on ``body``: from a file (one read fills the buffer) or a pipe (short reads,
    so lines straddle the reads at other places)."""
    if not pipe:
        return scan(tmp_path, body, tuple(k.decode() for k in keys), max_line, gz)
    r, w = os.pipe()

    def feed() -> None:
        try:
            view = memoryview(body)
            while view:
                view = view[os.write(w, view[:65536]) :]
        except BrokenPipeError:
            pass  # the scanner handed the file over before its end
        finally:
            os.close(w)

    writer = threading.Thread(target=feed, daemon=True)
    writer.start()
    try:
        return SCANNER.scan(r, gz, keys, max_line)
    finally:
        os.close(r)
        writer.join(10)


def _plain_bodies() -> list[bytes]:
    """The fuzzed plain files (segments each), plus edge shapes."""
    out = [f for c in CASES for f in c.files if f[:2] != b"\x1f\x8b"]
    line = SOURCES[0][1]
    return [*out, b"", b"\n", line, line + b"\n", line + b"\n" + line, b"\n" + line + b"\n"]


@needs_scanner
def test_the_scanner_reads_the_same_whatever_the_reads_and_compression(tmp_path: Path) -> None:
    """A file, a pipe (short reads), gzip in one or several members (empty ones too): the
    same result, the same line number and reason when handed over. A small ``max_line``
    changes nothing but the handover of the lines longer than it."""
    rng = random.Random(11)
    accepted = 0
    for body in _plain_bodies():
        ref = scan_bytes(body, tmp_path)
        accepted += not isinstance(ref, str)
        assert scan_bytes(body, tmp_path, pipe=True) == ref
        assert scan_bytes(gzip.compress(body, mtime=0), tmp_path, gz=True) == ref
        cuts = sorted(rng.randrange(len(body) + 1) for _ in range(rng.randint(1, 4)))
        parts = [body[a:b] for a, b in zip([0, *cuts], [*cuts, len(body)], strict=True)]
        members = b"".join(gzip.compress(p, mtime=0) for p in parts)
        assert scan_bytes(members, tmp_path, gz=True, pipe=True) == ref
        longest = max(len(x) for x in body.split(b"\n"))
        for max_line in (64, 128, 512):
            small = scan_bytes(body, tmp_path, max_line=max_line)
            if longest <= max_line:
                assert small == ref
            elif not isinstance(ref, str):
                assert isinstance(small, str) and "longer than the longest line" in small
    assert accepted >= 40


def _padded_point(rng: random.Random, length: int) -> bytes:
    """A Point line of exactly ``length`` bytes (the unread ``url`` tag pads it)."""
    base = rng.choice([x for x in SOURCES[0] if b'"url":"' in x])
    head, tail = base.split(b'"url":"', 1)
    tail = b'"' + tail.split(b'"', 1)[1]
    pad = length - len(head) - len(b'"url":"') - len(tail)
    assert pad >= 0
    return head + b'"url":"' + b"u" * pad + tail


@needs_scanner
def test_lines_straddling_the_read_buffer(tmp_path: Path) -> None:
    """The 1 MiB + max_line read buffer ends before, on, or just after a newline, in the
    middle of a line of exactly max_line bytes or of one byte more, with or without a last
    newline: every line is read exactly once, and an overlong one is handed over."""
    rng = random.Random(5)
    max_line = 4096
    cap = (1 << 20) + max_line
    points = [x for x in SOURCES[0] if x.startswith(b'{"metric":')]
    filler = [rng.choice(points) for _ in range(cap // 150)]
    for delta in (-2, -1, 0, 1, 2, 100):
        for long in (max_line, max_line + 1):
            # The long line replaces the last one that fits before the boundary; the first
            # line is padded so that the long line's newline lands at cap + delta.
            lines = [_padded_point(rng, 1000), *filler]
            ends = np.cumsum([len(x) + 1 for x in lines])
            at = int(np.searchsorted(ends, cap + delta - long, side="right"))
            lines[at] = _padded_point(rng, long)
            pad = cap + delta - long - int(ends[at - 1])
            lines[0] = _padded_point(rng, 1000 + pad)
            body = b"\n".join(lines) + b"\n"
            assert body[cap + delta] == ord("\n") and len(lines[0]) <= max_line
            assert body.rfind(b"\n", 0, cap + delta) == cap + delta - long - 1
            got = scan_bytes(body, tmp_path, max_line=max_line, keys=(b"name",))
            assert got == scan_bytes(body, tmp_path, max_line=max_line, pipe=True, keys=(b"name",))
            gz = gzip.compress(body, 1, mtime=0)
            assert got == scan_bytes(gz, tmp_path, gz=True, max_line=max_line, keys=(b"name",))
            if long > max_line:
                assert got == f"line {at + 1}: longer than the longest line read"
                continue
            assert got == scan_bytes(body, tmp_path, keys=(b"name",))  # all in one read
            values = np.sort(np.concatenate([np.frombuffer(x[2]) for x in got[4]]))
            assert got[0] == len(lines)
            assert values.tolist() == sorted(json.loads(x)["data"]["value"] for x in lines)
            cut = scan_bytes(body[:-1], tmp_path, max_line=max_line, keys=(b"name",))
            assert cut == f"line {len(lines)}: the last line is unterminated (cut mid-write?)"


@needs_scanner
def test_the_fuzz_reaches_both_readers(tmp_path: Path) -> None:
    """The mutations must not all be handed over (the fast reader would never be compared)
    nor all be read (its strictness would never be): both, and from each kind of mutation."""
    read: set[str] = set()
    handed: set[str] = set()
    n_read = 0
    for case in CASES:
        got = [scan_bytes(f, tmp_path, gz=f[:2] == b"\x1f\x8b") for f in case.files]
        kinds = set(case.id.split("-", 1)[1].split("+"))
        if any(isinstance(g, str) for g in got):
            handed |= kinds
        else:
            read |= kinds
            n_read += 1
    assert 0.35 * len(CASES) <= n_read <= 0.75 * len(CASES)
    assert {"values", "times", "tags", "gz", "gz-members"} <= read
    assert set(MUTATIONS) | {"gz-cut", "gz-flip", "cut"} <= handed


# --------------------------------------------------------------------------- known differences

DECL = (
    '{"type":"Metric","data":{"name":"%s","type":"%s","contains":"default","thresholds":[],'
    '"submetrics":%s},"metric":"%s"}'
)


def decl(name: str, kind: str = "trend", subs: str = "null") -> str:
    return DECL % (name, kind, subs, name)


def lines(*items: str) -> bytes:
    return "".join(x + "\n" for x in items).encode()


@needs_scanner
@pytest.mark.parametrize("escape", [x.decode() for x in LONE_SURROGATES])
@pytest.mark.parametrize("where", ["name", "url"])
def test_unpaired_surrogate_escapes(
    escape: str, where: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    tags = ('{"name":"E"}' if where == "name" else '{"name":"a","url":"E"}').replace("E", escape)
    body = lines(decl("m"), point(tags=tags), point(value="2"))
    check([body], tmp_path, monkeypatch)


@needs_scanner
def test_paired_surrogate_escapes_agree(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The valid neighbour of the xfail above: a pair is one character (🚀, U+10FFFF)."""
    for escape in ("\\uD83D\\uDE80", "\\uDBFF\\uDFFF", "\\ud800\\udc00"):
        for tags in ('{"name":"E"}', '{"name":"a","url":"E"}'):
            tags = tags.replace("E", escape)
            check([lines(decl("m"), point(tags=tags), point(value="2"))], tmp_path, monkeypatch)


@needs_scanner
@pytest.mark.filterwarnings("ignore:invalid value encountered:RuntimeWarning")
@pytest.mark.parametrize("values", [["1e400"], ["-1e400"], ["1e400", "1e400", "2"]])
def test_infinite_values(
    values: list[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    body = lines(decl("m"), *(point(value=v) for v in values))
    check([body], tmp_path, monkeypatch)


@needs_scanner
@pytest.mark.xfail(
    strict=True,
    reason="known: on gauge samples with the same time, DuckDB's arg_max(value, time_ns) "
    "keeps either; the fast reader keeps the later line, as k6 does (the last added)",
)
def test_gauge_samples_at_the_same_time(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    body = lines(decl("g", "gauge"), point("g", value="5"), point("g", value="7"))
    check([body], tmp_path, monkeypatch)


@needs_scanner
def test_the_fast_reader_keeps_the_later_of_tied_gauge_samples(tmp_path: Path) -> None:
    """k6's gauge value is the last sample added: in file order, whatever the time says."""
    path = tmp_path / "g.ndjson"
    for values, want in ((["5", "7"], 7.0), (["7", "5"], 5.0)):
        path.write_bytes(lines(decl("g", "gauge"), *(point("g", value=v) for v in values)))
        got = k6.summarize(path, cache=False)["metrics"]["g"]
        assert got == {"value": want, "min": 5.0, "max": 7.0}


@needs_scanner
@pytest.mark.parametrize("kind", ["trend", "counter"])
def test_sums_that_cancel(kind: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    values = ["1e20", "1", "-1e20"]
    body = lines(decl("m", kind), *(point(value=v) for v in values))
    check([body], tmp_path, monkeypatch)


@needs_scanner
def test_segment_without_the_declaration(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    subs = '[{"name":"m{status:200}","suffix":"status:200","tags":{"status":"200"}}]'
    tags = '{"name":"a","status":"200"}'
    first = lines(decl("m", "trend", subs), point(tags=tags, value="1"))
    second = lines(point(tags=tags, value="2"))
    check([first, second], tmp_path, monkeypatch)


@needs_scanner
@pytest.mark.parametrize("name", ["null", "5"])
@pytest.mark.parametrize("others", [False, True])
def test_metric_line_with_a_name_that_is_not_a_string(
    name: str, others: bool, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    bad = '{"type":"Metric","data":{"name":N,"type":"trend"},"metric":"m"}'.replace("N", name)
    body = lines(bad, *([decl("m")] if others else []), point())
    check([body], tmp_path, monkeypatch)


@needs_scanner
def test_an_exponent_beyond_the_clip_is_exact(tmp_path: Path) -> None:
    text = "0." + "0" * 99_999 + "1e1000000"  # 1e900000: float() says inf
    got = scan_bytes(lines(point(value=text)), tmp_path)
    assert np.frombuffer(got[4][0][2], np.float64).tolist() == [float(text)]


@needs_scanner
@pytest.mark.parametrize("kind", ['"type":"histogram",', ""])
def test_a_declared_metric_of_unknown_type_in_gzip(
    kind: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    body = lines('{"type":"Metric","data":{"name":"m",' + kind + '"x":1},"metric":"m"}', point())
    check([gzip.compress(body, mtime=0)], tmp_path, monkeypatch)
