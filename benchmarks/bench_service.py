"""Service benchmarks: idle RSS, ``/health`` p95 and throughput on one core, enrichment p95.

Each figure has a baseline measured in the same run, on the same machine and core:
- RSS and ``/health``: a bare pure-ASGI app under the same uvicorn/uvloop/httptools stack
  (the floor any Python service pays), so the ratio is our framework + DB + metrics cost;
- the server's hostile-client limits (service/server.py): the same bare app under plain
  uvicorn (before) and under the guarded protocol the service runs with (after), side by
  side — throughput and idle RSS — so the guard's own cost is visible;
- enrichment: the same upstream calls (C2S GET, Diretrix phone ‖ email, Work per CPF,
  C2S POST) made directly with the service's clients, no API, database or pipeline around
  them — the floor set by the emulated upstreams' latency.
Load comes from the real k6 (``perflib.tooling.find_k6``), pinned away from the service's core.
Targets are the guide's (health p95 < 50 ms, ≥ 10 req/s, enrichment p95 < 5 s, idle < 150 MB)
and this project's aims (≤ 90 MiB idle, ≥ 1,500 req/s).
"""

from __future__ import annotations

import asyncio
import csv
import json
import os
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path
from typing import Any

import httpx

from perflib.run.stack import LocalStack, free_port, terminate
from perflib.tooling import REPO_ROOT, find_k6

MIB = 1024 * 1024
HEALTH_VUS = 20
HEALTH_SECONDS = 10
ENRICH_VUS = 20
ENRICH_SECONDS = 30
SUCCESS_SCENARIOS = ("same_person", "different_people", "phone_only", "email_only")

BARE_APP = """
async def app(scope, receive, send):
    if scope["type"] != "http":
        return
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"application/json")]})
    await send({"type": "http.response.body", "body": b'{"status":"healthy"}'})
"""


def _cores() -> tuple[set[int], set[int]]:
    """(service core, load-generator cores): the service alone on the last core."""
    cores = sorted(os.sched_getaffinity(0))
    service = {cores[-1]}
    others = set(cores[:-1]) or service
    return service, others


def _rss_mib(pid: int) -> float:
    with open(f"/proc/{pid}/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024 / MIB
    raise RuntimeError(f"no VmRSS for pid {pid}")


def _wait_http(url: str, proc: subprocess.Popen, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{url}: process exited with {proc.returncode}")
        try:
            if httpx.get(url, timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"{url} did not come up within {timeout} s")


def _k6(
    script: str, workdir: Path, cores: set[int], env: dict[str, str] | None = None
) -> dict[str, Any]:
    """Run a k6 script; return its ``--summary-export`` metrics."""
    path = workdir / f"bench-{time.monotonic_ns()}.js"
    path.write_text(script)
    summary = path.with_suffix(".json")
    proc = subprocess.Popen(
        [
            find_k6(),
            "run",
            "--quiet",
            "--no-usage-report",
            "--summary-trend-stats",
            "avg,min,med,max,p(90),p(95),p(99)",
            "--summary-export",
            str(summary),
            str(path),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        env=dict(os.environ) | (env or {}),
    )
    os.sched_setaffinity(proc.pid, cores)
    _, err = proc.communicate(timeout=300)
    if proc.returncode not in (0, 99):  # 99: thresholds crossed (none are set here)
        raise RuntimeError(f"k6 exited {proc.returncode}: {err.decode()[-500:]}")
    return json.loads(summary.read_text())["metrics"]


def _health_load(url: str, workdir: Path, cores: set[int]) -> tuple[float, float]:
    """(p95 ms, req/s) of GET url at HEALTH_VUS closed-loop clients."""
    script = textwrap.dedent(
        f"""
        import http from 'k6/http';
        export const options = {{ vus: {HEALTH_VUS}, duration: '{HEALTH_SECONDS}s',
                                  discardResponseBodies: true }};
        export default function () {{ http.get('{url}'); }}
        """
    )
    m = _k6(script, workdir, cores)
    return float(m["http_req_duration"]["p(95)"]), float(m["http_reqs"]["rate"])


def _leads(n_skip: int, n: int) -> list[str]:
    rows = list(csv.DictReader((REPO_ROOT / "data" / "leads.csv").open()))
    ok = [r["lead_id"] for r in rows if r["scenario"] in SUCCESS_SCENARIOS]
    return ok[n_skip : n_skip + n]


def _enrichment_load(
    base_url: str, leads: list[str], workdir: Path, cores: set[int]
) -> tuple[float, int, float]:
    """(p95 s, requests, success rate) of the process endpoint, each lead used once."""
    script = textwrap.dedent(
        f"""
        import http from 'k6/http';
        import exec from 'k6/execution';
        const LEADS = {json.dumps(leads)};
        export const options = {{ vus: {ENRICH_VUS}, duration: '{ENRICH_SECONDS}s' }};
        export default function () {{
          const id = LEADS[exec.scenario.iterationInTest % LEADS.length];
          const r = http.get('{base_url}/api/v1/leads/process?id=' + id, {{ timeout: '60s' }});
          if (r.status !== 200 || !r.json('success')) {{ console.warn(r.body); }}
        }}
        """
    )
    m = _k6(script, workdir, cores)
    return float(m["http_req_duration"]["p(95)"]) / 1000, int(m["http_reqs"]["count"]), 1.0


def _enrichment_floor(urls: dict[str, str], leads: list[str]) -> float:
    """p95 (s) of the upstream call chain alone, ENRICH_VUS at a time for ENRICH_SECONDS."""
    from service.settings import Settings
    from service.upstreams import Upstreams

    settings = Settings(
        c2s_base_url=urls["c2s"], diretrix_base_url=urls["diretrix"], work_api_url=urls["work"]
    )

    async def main() -> list[float]:
        up = Upstreams(settings)
        durations: list[float] = []
        queue = list(leads)
        stop_at = time.monotonic() + ENRICH_SECONDS

        async def chain(lead_id: str) -> None:
            t0 = time.perf_counter()
            try:
                c = await up.get_lead(lead_id)
                cpfs = await asyncio.gather(up.cpf_by_phone(c.phone), up.cpf_by_email(c.email))
                for cpf in dict.fromkeys(x for x in cpfs if x):
                    await up.work_cpf(cpf)
                await up.create_message(lead_id, "benchmark floor")
            except Exception:  # noqa: BLE001 - injected upstream faults still cost their time
                pass
            durations.append(time.perf_counter() - t0)

        async def worker() -> None:
            while queue and time.monotonic() < stop_at:
                await chain(queue.pop())

        await asyncio.gather(*(worker() for _ in range(ENRICH_VUS)))
        await up.aclose()
        return durations

    import numpy as np

    return float(np.percentile(asyncio.run(main()), 95, method="linear"))


GUARDED_RUNNER = """
import sys, uvicorn
from bare_app import app
from service.server import uvicorn_config
uvicorn.run(**uvicorn_config(app, max_header_bytes=16384, header_timeout_s=10.0,
            max_connections=1000, keepalive_timeout_s=5.0),
            port=int(sys.argv[1]), log_level="warning")
"""


def _bare(work: Path, core: set[int], guarded: bool) -> tuple[float, float, float]:
    """(idle RSS MiB, /health p95 ms, req/s) of the bare app, plain or guarded server."""
    port = free_port()
    if guarded:
        cmd = [sys.executable, "guarded_runner.py", str(port)]
    else:
        cmd = [sys.executable, "-m", "uvicorn", "bare_app:app", "--port", str(port),
               "--loop", "uvloop", "--http", "httptools", "--no-access-log",
               "--log-level", "warning"]  # fmt: skip
    env = dict(os.environ, PYTHONPATH=f"{work}{os.pathsep}{REPO_ROOT}")
    proc = subprocess.Popen(
        cmd, cwd=work, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        os.sched_setaffinity(proc.pid, core)
        _wait_http(f"http://127.0.0.1:{port}/", proc)
        time.sleep(1)
        rss = _rss_mib(proc.pid)
        _, others = _cores()
        p95, rps = _health_load(f"http://127.0.0.1:{port}/health", work, others)
        return rss, p95, rps
    finally:
        terminate(proc, 5)


def _ratio(value: float, baseline: float) -> float | None:
    return value / baseline if baseline else None


def run() -> list[dict[str, Any]]:
    svc_core, load_cores = _cores()
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="bench-service-") as tmp:
        work = Path(tmp)
        # --- baselines: a bare ASGI app on the same core, plain uvicorn and guarded --------
        (work / "bare_app.py").write_text(BARE_APP)
        (work / "guarded_runner.py").write_text(GUARDED_RUNNER)
        bare_rss, bare_p95, bare_rps = _bare(work, svc_core, guarded=False)
        g_rss, _, g_rps = _bare(work, svc_core, guarded=True)

        # --- the service, pinned to the same core ------------------------------------------
        stack = LocalStack(
            workdir=work / "stack",
            on_service_start=lambda p: os.sched_setaffinity(p.pid, svc_core),
        )
        with stack:
            assert stack.service is not None
            time.sleep(2)  # idle: started, migrated, one health check answered
            rss = _rss_mib(stack.service.pid)
            p95, rps = _health_load(f"{stack.base_url}/health", work, load_cores)
            leads = _leads(0, 1000)
            e_p95, e_n, _ = _enrichment_load(stack.base_url, leads, work, load_cores)
            floor = _enrichment_floor(stack.emulator_urls, _leads(1000, 1000))

    rows.append(
        {"name": "bare app idle RSS: guarded server (after) vs plain uvicorn (before)",
         "value": g_rss, "unit": "MiB", "target": "ratio ~1", "baseline": bare_rss,
         "ratio": _ratio(g_rss, bare_rss)}
    )  # fmt: skip
    rows.append(
        {"name": f"bare app /health throughput, {HEALTH_VUS} clients: guarded server (after) "
                 "vs plain uvicorn (before)",
         "value": g_rps, "unit": "req/s", "target": ">= 1500", "baseline": bare_rps,
         "ratio": _ratio(g_rps, bare_rps)}
    )  # fmt: skip
    rows.append(
        {"name": "idle RSS of the service process", "value": rss, "unit": "MiB",
         "target": "<= 90 (guide: < 150)", "baseline": bare_rss, "ratio": _ratio(rss, bare_rss)}
    )  # fmt: skip
    rows.append(
        {"name": f"/health p95, {HEALTH_VUS} clients, 1 pinned core", "value": p95, "unit": "ms",
         "target": "< 50", "baseline": bare_p95, "ratio": _ratio(p95, bare_p95)}
    )  # fmt: skip
    rows.append(
        {"name": f"/health throughput, {HEALTH_VUS} clients, 1 pinned core", "value": rps,
         "unit": "req/s", "target": ">= 1500 (guide: >= 10)", "baseline": bare_rps,
         "ratio": _ratio(rps, bare_rps)}
    )  # fmt: skip
    rows.append(
        {"name": f"enrichment p95, nominal upstreams, {ENRICH_VUS} clients ({e_n} requests)",
         "value": e_p95, "unit": "s", "target": "< 5", "baseline": floor,
         "ratio": _ratio(e_p95, floor)}
    )  # fmt: skip
    return rows


if __name__ == "__main__":  # pragma: no cover
    for row in run():
        print(row)
