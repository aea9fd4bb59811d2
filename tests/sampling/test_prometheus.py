"""perflib.sampling.prometheus and the ``process`` sampler against a real Prometheus server.

A tiny exporter process (prometheus-client's default process collector, 30 MiB of
ballast, a thread burning part of a CPU) is scraped every second by the real
``prometheus`` binary; the sampler's figures are checked against /proc and against the raw
counter samples held by Prometheus.
"""

from __future__ import annotations

import socket
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import httpx
import pytest

from perflib.rundir import EventLog, SampleWriter, read_events, read_samples, utcnow
from perflib.sampling.prometheus import (
    PrometheusBinaryNotFound,
    PrometheusClient,
    PrometheusQueryError,
    PrometheusServer,
    PrometheusUnavailable,
    find_prometheus,
    free_port,
    parse_duration,
    start_for_stack,
)
from perflib.sampling.remote import ProcessSampler

try:
    PROMETHEUS = find_prometheus()
except PrometheusBinaryNotFound as exc:  # pragma: no cover - install_prometheus.sh provides it
    PROMETHEUS = None
    REASON = str(exc)
else:
    REASON = ""

needs_prometheus = pytest.mark.skipif(PROMETHEUS is None, reason=f"no prometheus: {REASON}")

EXPORTER = textwrap.dedent("""
    import sys, threading, time
    from prometheus_client import start_http_server
    ballast = bytearray(30 * 1024 * 1024)
    for i in range(0, len(ballast), 4096):
        ballast[i] = 1  # touch every page so it is resident
    start_http_server(int(sys.argv[1]), addr="127.0.0.1")
    def burn():
        while True:
            t = time.monotonic()
            while time.monotonic() - t < 0.02:
                pass
            time.sleep(0.03)
    threading.Thread(target=burn, daemon=True).start()
    while True:
        time.sleep(1)
""")


def vm_rss_bytes(pid: int) -> int:
    """VmRSS from /proc/<pid>/status (kB), independent of prometheus-client's reading."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


class Exporter:
    def __init__(self, script: Path, port: int) -> None:
        self.script, self.port = script, port
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/metrics"

    def start(self) -> None:
        self.proc = subprocess.Popen([sys.executable, str(self.script), str(self.port)])
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                if httpx.get(self.url, timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                time.sleep(0.1)
        raise AssertionError("exporter did not come up")

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait()
            self.proc = None


@pytest.fixture(scope="module")
def exporters(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Exporter, Exporter]]:
    """Two exporters: a steady one, and one the restart test kills and starts again."""
    script = tmp_path_factory.mktemp("exporter") / "exporter.py"
    script.write_text(EXPORTER)
    pair = (Exporter(script, free_port()), Exporter(script, free_port()))
    for exp in pair:
        exp.start()
    yield pair
    for exp in pair:
        exp.stop()


@pytest.fixture(scope="module")
def exporter(exporters: tuple[Exporter, Exporter]) -> Exporter:
    return exporters[0]


@pytest.fixture(scope="module")
def prom(exporters: tuple[Exporter, Exporter]) -> Iterator[PrometheusServer]:
    """One real Prometheus for the module (each start costs ~5 s before its first scrape:
    Prometheus applies discovered targets every 5 s)."""
    with PrometheusServer(
        [e.url for e in exporters], scrape_interval=1.0, labels={"app": "exporter"}
    ) as server:
        server.wait_for_points('process_resident_memory_bytes{app="exporter"}', 4)
        yield server


def only(exp: Exporter) -> dict[str, str]:
    return {"instance": f"127.0.0.1:{exp.port}"}


# --- the server ------------------------------------------------------------------------------


@needs_prometheus
def test_server_lifecycle_via_start_for_stack(exporter: Exporter) -> None:
    server = start_for_stack(f"http://127.0.0.1:{exporter.port}/", labels={"app": "svc"})
    try:
        (job,) = server.config()["scrape_configs"]
        assert job["metrics_path"] == "/metrics" and job["scrape_interval"] == "1s"
        assert job["static_configs"] == [
            {"targets": [f"127.0.0.1:{exporter.port}"], "labels": {"app": "svc"}}
        ]
        workdir, port, proc = server.workdir, server.port, server.process
        assert workdir is not None and workdir.exists() and proc is not None
        assert httpx.get(f"{server.url}/-/ready").status_code == 200
        assert port not in (9090, 8081)
    finally:
        server.stop()
    assert proc.poll() is not None  # stopped
    assert not workdir.exists()  # its TSDB removed
    with socket.socket() as s:
        s.bind(("127.0.0.1", port))  # the port is free again
    assert server.stop() is None  # idempotent


def test_missing_binary_is_a_clear_error(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("PROMETHEUS_BINARY", str(tmp_path / "nope"))
    with pytest.raises(PrometheusBinaryNotFound, match="PROMETHEUS_BINARY"):
        find_prometheus()
    with pytest.raises(PrometheusBinaryNotFound):
        PrometheusServer(["http://127.0.0.1:1/metrics"]).start()
    fake = tmp_path / "prometheus"
    fake.write_text("#!/bin/sh\n")
    fake.chmod(0o755)
    monkeypatch.setenv("PROMETHEUS_BINARY", str(fake))
    assert find_prometheus() == str(fake)  # the variable wins over PATH


def test_parse_duration() -> None:
    assert parse_duration("1s") == 1.0
    assert parse_duration("1m30s") == 90.0
    assert parse_duration("500ms") == 0.5
    assert parse_duration("") is None and parse_duration("abc") is None


# --- the client against real PromQL ----------------------------------------------------------


@needs_prometheus
def test_bad_query_not_retried(prom: PrometheusServer) -> None:
    with prom.client() as c:
        with pytest.raises(PrometheusQueryError, match="bad_data"):
            c.query("rate(process_cpu_seconds_total[")
        assert c.requests_sent == 1  # a bad query is not worth retrying


def test_unreachable_is_retried_then_reported() -> None:
    url = f"http://127.0.0.1:{free_port()}"
    with (
        PrometheusClient(url, retries=2, backoff=0.01) as c,
        pytest.raises(PrometheusUnavailable, match="ConnectError.*after 3 attempts"),
    ):
        c.query("up")


@needs_prometheus
def test_chunked_range_equals_single_request(prom: PrometheusServer) -> None:
    end = utcnow()
    start = end - timedelta(seconds=8)
    with prom.client() as whole, prom.client(max_points=3) as split:
        q = 'process_resident_memory_bytes{app="exporter"}'
        a = whole.query_range(q, start, end, 1)
        b = split.query_range(q, start, end, 1)
        assert split.requests_sent >= 3
    assert len(a) == len(b) == 2
    assert a[0].times.tolist() == b[0].times.tolist()
    assert a[0].values.tolist() == b[0].values.tolist()


# --- the process sampler ---------------------------------------------------------------------


@needs_prometheus
def test_process_memory_equals_rss(prom: PrometheusServer, exporter: Exporter) -> None:
    assert exporter.proc is not None
    sampler = ProcessSampler(prom.url, labels=only(exporter), settle_s=0)
    assert sampler.resolution == 1.0  # read from /api/v1/targets
    end = utcnow()
    result = sampler.fetch(end - timedelta(seconds=10), end)
    rss = vm_rss_bytes(exporter.proc.pid) / 2**20
    assert result.rows, result.warnings
    assert {r["instance"] for r in result.rows} == {f"127.0.0.1:{exporter.port}"}
    assert {r["source"] for r in result.rows} == {"process"}
    last = result.rows[-1]["memory_used_mb"]
    assert last == pytest.approx(rss, rel=0.05, abs=2.0)
    assert last > 30  # the ballast is resident


@needs_prometheus
def test_process_cpu_matches_raw_counter(prom: PrometheusServer, exporter: Exporter) -> None:
    sampler = ProcessSampler(prom.url, labels=only(exporter), settle_s=0)
    end = utcnow()
    result = sampler.fetch(end - timedelta(seconds=6), end)
    row = next(r for r in reversed(result.rows) if r["cpu_pct"] is not None)
    window = sampler.rate_window
    with prom.client() as c:
        (series,) = c.query(
            f'process_cpu_seconds_total{{instance="127.0.0.1:{exporter.port}"}}[{window:.0f}s]',
            at=row["time"],
        )
    times, values = series.times, series.values
    assert len(times) >= 2
    # the counter's slope over the samples inside the window, in % of one CPU
    slope = (values[-1] - values[0]) / (times[-1] - times[0]) * 100
    assert slope > 1  # the exporter burns CPU
    # rate() extrapolates to the window's edges by at most half an interval each side
    assert row["cpu_pct"] == pytest.approx(slope, rel=0.35)


@needs_prometheus
def test_process_sampler_lifecycle(
    prom: PrometheusServer, exporter: Exporter, tmp_path: Path
) -> None:
    sampler = ProcessSampler(prom.url, labels=only(exporter), memory_limit_mb=512)
    with SampleWriter(tmp_path / "samples.csv", with_instance=True) as sink:
        events = EventLog(tmp_path / "events.jsonl")
        sampler.start(sink, events)
        time.sleep(2)
        sampler.stop()  # waits 2 scrape intervals for the last scrape to land
        events.close()
    assert not sampler.errors
    df = read_samples(tmp_path / "samples.csv")
    assert len(df) >= 2
    assert (df["memory_limit_mb"] == 512).all() and (df["source"] == "process").all()
    assert df["cpu_throttled_pct"].isna().all()  # unknown for this source: left empty
    assert df["time"].is_monotonic_increasing
    assert read_events(tmp_path / "events.jsonl").empty


@needs_prometheus
def test_restarted_process_gap_and_counter_reset(
    prom: PrometheusServer, exporters: tuple[Exporter, Exporter]
) -> None:
    exp = exporters[1]
    begin = utcnow() - timedelta(seconds=3)
    exp.stop()
    down_from = utcnow()
    time.sleep(3)
    down_to = utcnow()
    exp.start()
    time.sleep(3)
    end = utcnow()
    sampler = ProcessSampler(prom.url, labels=only(exp), settle_s=0)
    result = sampler.fetch(begin, end)
    assert exp.proc is not None
    rss = vm_rss_bytes(exp.proc.pid) / 2**20
    times = [r["time"] for r in result.rows]
    assert any(t < down_from for t in times) and any(t > down_to for t in times)
    # one more point may land before the staleness marker; none while it was down
    assert not [t for t in times if down_from + timedelta(seconds=1.5) < t < down_to]
    gaps = [g for g in result.gaps if g.end >= down_from and g.start <= down_to]
    assert gaps, result.warnings
    assert all(r["cpu_pct"] is None or r["cpu_pct"] >= 0 for r in result.rows)  # no reset dip
    assert result.rows[-1]["memory_used_mb"] == pytest.approx(rss, rel=0.05, abs=2.0)
    assert any("no data from" in w for w in result.warnings)


def test_backoff_and_retry_after() -> None:
    from email.utils import format_datetime

    from perflib.sampling.prometheus import MAX_RETRY_AFTER_S, _retry_after, backoff_delay

    assert backoff_delay(0, 0.5, 30, retry_after=3.0) == 3.0  # the server's word wins
    assert backoff_delay(0, 0.5, 30, retry_after=10_000) == MAX_RETRY_AFTER_S
    assert 4.0 <= backoff_delay(3, 0.5, 30) <= 4.4  # 0.5 · 2³ plus ≤ 10 % jitter
    assert 30 <= backoff_delay(10, 0.5, 30) <= 33  # capped
    later = format_datetime(utcnow() + timedelta(seconds=20), usegmt=True)
    assert 15 <= _retry_after(httpx.Response(429, headers={"Retry-After": later})) <= 20
    assert _retry_after(httpx.Response(429, headers={"Retry-After": "7"})) == 7.0
    assert _retry_after(httpx.Response(429)) is None


def test_header_auth_redacts_each_part() -> None:
    from perflib.sampling.prometheus import HeaderAuth

    auth = HeaderAuth("FlyV1 fm2_firstpart123,fm2_secondpart456")
    text = auth.redact("echo: fm2_secondpart456 and fm2_firstpart123,fm2_secondpart456")
    assert "fm2_" not in text and repr(auth) == "HeaderAuth(<redacted>)"


def test_process_queries_leave_out_prometheus_itself() -> None:
    s = ProcessSampler("http://127.0.0.1:1", resolution=1.0)
    q = s.rendered_queries()
    assert q["memory_used"] == (
        'max by (instance) (process_resident_memory_bytes{job!="prometheus"})'
    )
    assert q["cpu"] == (
        'max by (instance) (rate(process_cpu_seconds_total{job!="prometheus"}[4s]))'
    )
    s = ProcessSampler("http://127.0.0.1:1", labels={"job": "svc", "app": 'a"b'}, resolution=1.0)
    assert (
        'process_resident_memory_bytes{job="svc",app="a\\"b"}'
        in s.rendered_queries()["memory_used"]
    )


@needs_prometheus
def test_real_service_memory_through_prometheus() -> None:
    """The lead-enrichment service itself (perflib.run.stack.LocalStack), scraped by the real
    Prometheus that `perflib serve --prometheus` starts: memory equals its RSS."""
    stack_mod = pytest.importorskip("perflib.run.stack", reason="perflib.run.stack not available")
    with stack_mod.LocalStack() as stack:
        prom = start_for_stack(stack.base_url, labels={"app": "lead-enrichment"})
        try:
            prom.wait_for_points('process_resident_memory_bytes{app="lead-enrichment"}', 2)
            for _ in range(5):  # some work, so the figures are not those of an idle process
                httpx.get(f"{stack.base_url}/health", timeout=5)
            time.sleep(1.5)
            end = utcnow()
            result = ProcessSampler(prom.url, labels={"app": "lead-enrichment"}, settle_s=0).fetch(
                end - timedelta(seconds=5), end
            )
            assert stack.service is not None
            rss = vm_rss_bytes(stack.service.pid) / 2**20
        finally:
            prom.stop()
    assert result.rows, result.warnings
    assert {r["instance"] for r in result.rows} == {stack.base_url.removeprefix("http://")}
    assert result.rows[-1]["memory_used_mb"] == pytest.approx(rss, rel=0.05, abs=2.0)


SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "install_prometheus.sh"


def test_install_script_idempotent_and_clear(tmp_path: Path) -> None:
    fake = tmp_path / "bin" / "prometheus"
    fake.parent.mkdir()
    fake.write_text("#!/bin/sh\necho 'prometheus, version 0.0.0'\n")
    fake.chmod(0o755)
    env = {"PATH": str(fake.parent), "HOME": str(tmp_path)}
    done = subprocess.run(["/bin/bash", str(SCRIPT)], env=env, capture_output=True, text=True)
    assert done.returncode == 0 and "already installed" in done.stderr
    pinned = subprocess.run(
        ["/bin/bash", str(SCRIPT)],
        capture_output=True,
        text=True,
        env={**env, "PROMETHEUS_BINARY": str(fake)},
    )
    assert pinned.returncode == 0 and "PROMETHEUS_BINARY" in pinned.stderr
    # neither a binary nor apt-get on PATH: a precise message, exit 1, nothing attempted
    empty = tmp_path / "empty"
    empty.mkdir()
    none = subprocess.run(
        ["/bin/bash", str(SCRIPT)],
        capture_output=True,
        text=True,
        env={"PATH": str(empty), "HOME": str(tmp_path)},
    )
    assert none.returncode == 1
    assert "no apt-get" in none.stderr and "PROMETHEUS_BINARY" in none.stderr
