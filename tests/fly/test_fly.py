"""perflib.fly: the token, the Machines API reader and ``fly logs`` parsing.

Fly's API cannot exist here, so its recorded answers (tests/fixtures/fly, Fly's documented
shapes) are served over loopback by a real HTTP server; flyctl is replaced by a script
printing a recorded ``fly logs --json`` output.
"""

from __future__ import annotations

import json
import logging
import os
import stat
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest

from perflib.fly import (
    TOKEN_ENV,
    FlyError,
    FlyToken,
    FlyTokenMissing,
    Machine,
    MachinesClient,
    machine_events,
    machine_summary,
    merge_events,
    parse_log_lines,
    parse_machines,
    parse_time,
    prometheus_url,
    read_flyctl_logs,
)
from tests.fixtures.fly import flyapi

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "fly"

TOKEN = "fm2_lAb0rAt0ry-s3cret-t0ken"
A, B, C = "3d8d9e1b2f6e89", "e784079b449483", "148ed193b95d89"
T0 = datetime(2026, 11, 20, 10, 0, tzinfo=UTC)
T1 = datetime(2026, 11, 20, 10, 10, tzinfo=UTC)


@pytest.fixture
def fake():
    with flyapi.FakeFly(f"Bearer {TOKEN}") as server:
        yield server


def machines() -> list[Machine]:
    return parse_machines(json.loads((FIXTURES / "machines.json").read_text()))


# --- token ---------------------------------------------------------------------------------------


def test_missing_token_names_the_variable() -> None:
    with pytest.raises(FlyTokenMissing) as info:
        FlyToken.from_env({})
    assert TOKEN_ENV in str(info.value)
    with pytest.raises(FlyTokenMissing):
        FlyToken.from_env({TOKEN_ENV: "   "})


def test_token_schemes_and_redaction() -> None:
    bearer = FlyToken.from_env({TOKEN_ENV: TOKEN})
    assert bearer.auth()._value == f"Bearer {TOKEN}"
    macaroon = FlyToken.from_env({TOKEN_ENV: f"FlyV1 {TOKEN},fm2_second"})
    assert macaroon.auth()._value == f"FlyV1 {TOKEN},fm2_second"  # passed through as such
    for obj in (bearer, macaroon, bearer.auth(), macaroon.auth()):
        assert TOKEN not in repr(obj) and TOKEN not in str(obj)
    assert TOKEN not in bearer.auth().redact(f"server said: bad token {TOKEN}")


def test_prometheus_url_per_org(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("FLY_ORG", raising=False)
    assert prometheus_url("acme") == "https://api.fly.io/prometheus/acme"
    assert prometheus_url(None) == "https://api.fly.io/prometheus/personal"
    monkeypatch.setenv("FLY_ORG", "other")
    assert prometheus_url(None) == "https://api.fly.io/prometheus/other"


# --- machines ------------------------------------------------------------------------------------


def test_parse_machines_preset_state_checks() -> None:
    ms = {m.id: m for m in machines()}
    assert set(ms) == {A, B, C}
    assert ms[A].preset == "shared-cpu-1x:512mb"
    assert (ms[C].cpu_kind, ms[C].cpus, ms[C].memory_mb) == ("shared", 1, 1024)
    assert ms[C].preset == "shared-cpu-1x:1024mb"
    assert ms[B].state == "started" and ms[B].region == "iad"
    assert ms[B].process_group == "app"
    summary = {row["id"]: row for row in machine_summary(ms.values())}
    assert summary[A]["checks"] == "1/1" and summary[A]["failing_checks"] == []
    assert summary[C]["checks"] == "0/1"
    assert summary[C]["failing_checks"] == ["servicecheck-00-http-8080"]


def test_parse_machines_rejects_other_shapes() -> None:
    with pytest.raises(FlyError, match="JSON array"):
        parse_machines({"machines": []})
    with pytest.raises(FlyError, match="no id"):
        parse_machines([{"name": "x"}])


def test_machine_events_oom_restart_and_launch() -> None:
    events = machine_events(machines())
    kinds = [(e["type"], e["detail"]["instance"]) for e in events]
    assert ("oom_killed", B) in kinds
    oom = next(e for e in events if e["type"] == "oom_killed")
    # the exit_event's exited_at, not the event's millisecond timestamp, dates the kill
    assert oom["time"] == "2026-11-20T10:04:52.641000Z"
    assert oom["detail"]["exit_code"] == 137 and oom["detail"]["restart_count"] == 1
    assert oom["detail"]["source"] == "machines_api"
    restart = [e for e in events if e["type"] == "restart"]
    assert [e["detail"]["instance"] for e in restart] == [B]
    # 1795169170220 ms (T0 + 370.22 s)
    assert restart[0]["time"] == "2026-11-20T10:06:10.220000Z"
    # first starts after a launch are not restarts
    assert sum(1 for e in events if e["type"] == "machine_start") == 3
    assert [e["time"] for e in events] == sorted(e["time"] for e in events)


def test_machine_events_window() -> None:
    events = machine_events(machines(), T0, T1)
    assert {e["type"] for e in events} == {
        "oom_killed",
        "restart",
        "machine_launch",
        "machine_start",
    }
    assert all(T0 <= parse_time(e["time"]) <= T1 for e in events)
    assert [e["detail"]["instance"] for e in events if e["type"] == "machine_launch"] == [C]


def test_machines_client_over_loopback(fake: flyapi.FakeFly) -> None:
    token = FlyToken(TOKEN)
    with MachinesClient(flyapi.APP, token, base_url=fake.machines_url, backoff=0.01) as mc:
        ms = mc.list_machines()
        assert TOKEN not in repr(mc)
    assert [m.id for m in ms] == [A, B, C]
    (req,) = fake.requests
    assert req.path == f"/v1/apps/{flyapi.APP}/machines"
    assert req.headers["Authorization"] == f"Bearer {TOKEN}"


def test_machines_client_retries_rate_limit(fake: flyapi.FakeFly) -> None:
    fake.fail_next((429, {"Retry-After": "0"}), (503, {}))
    with MachinesClient(
        flyapi.APP, FlyToken(TOKEN), base_url=fake.machines_url, backoff=0.01
    ) as mc:
        assert len(mc.list_machines()) == 3
    assert len(fake.requests) == 3


def test_machines_client_errors_never_show_the_token(
    fake: flyapi.FakeFly, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    with (
        MachinesClient(
            flyapi.APP, FlyToken(TOKEN + "-wrong"), base_url=fake.machines_url, backoff=0.01
        ) as mc,
        pytest.raises(FlyError) as info,
    ):
        mc.list_machines()
    assert "401" in str(info.value) and TOKEN_ENV in str(info.value)
    with (
        MachinesClient(
            "no-such-app", FlyToken(TOKEN), base_url=fake.machines_url, backoff=0.01
        ) as mc,
        pytest.raises(FlyError, match="404"),
    ):
        mc.list_machines()
    fake.fail_next(*[(503, {})] * 3)
    with (
        MachinesClient(
            flyapi.APP, FlyToken(TOKEN), base_url=fake.machines_url, retries=2, backoff=0.01
        ) as mc,
        pytest.raises(FlyError) as exhausted,
    ):
        mc.list_machines()
    assert "HTTP 503 after 3 attempts" in str(exhausted.value)
    for text in (str(info.value), str(exhausted.value), caplog.text):
        assert TOKEN not in text


# --- logs ----------------------------------------------------------------------------------------


def test_parse_fly_logs_text() -> None:
    parsed = parse_log_lines((FIXTURES / "fly_logs.txt").read_text().splitlines())
    assert parsed.lines == 9
    assert parsed.untimed == 1  # the kernel line without a timestamp cannot be placed
    kinds = [(e["time"], e["type"]) for e in parsed.events]
    assert kinds == [
        ("2026-11-20T10:04:51.000000Z", "oom_killed"),
        ("2026-11-20T10:04:52.000000Z", "service_exit"),
        ("2026-11-20T10:04:52.000000Z", "oom_killed"),
        ("2026-11-20T10:04:54.000000Z", "restart"),
        ("2026-11-20T10:06:10.000000Z", "restart"),
    ]
    kernel = parsed.events[0]["detail"]
    assert kernel["pid"] == 512 and kernel["process"] == "python"
    assert kernel["anon_rss_mb"] == pytest.approx(498176 / 1024)  # kB → MiB = 486.5
    assert kernel["total_vm_mb"] == pytest.approx(812344 / 1024)
    assert {e["detail"]["instance"] for e in parsed.events} == {B}
    assert parsed.events[1]["detail"]["signal"] == "SIGKILL"


def test_parse_fly_logs_json_and_colours() -> None:
    lines = (FIXTURES / "fly_logs.jsonl").read_text().splitlines()
    parsed = parse_log_lines(lines)
    assert [(e["time"], e["type"], e["detail"]["reason"]) for e in parsed.events] == [
        ("2026-11-20T10:04:51.904311Z", "oom_killed", "kernel_oom_killer"),
        ("2026-11-20T10:04:52.118020Z", "oom_killed", "init_reported_oom"),
    ]
    coloured = (
        "\x1b[2m2026-11-20T10:04:52Z\x1b[0m app[e784079b449483] \x1b[32miad\x1b[0m "
        "[\x1b[34minfo\x1b[0m] INFO Main child exited normally with code: 137"
    )
    (event,) = parse_log_lines([coloured]).events
    assert event["type"] == "service_exit" and event["detail"]["exit_code"] == 137


def test_one_oom_from_three_sources_is_one_event() -> None:
    logs = parse_log_lines((FIXTURES / "fly_logs.txt").read_text().splitlines()).events
    metric = [
        {
            "time": "2026-11-20T10:06:15.000000Z",
            "type": "oom_killed",
            "detail": {"instance": B, "source": "prometheus"},
        }
    ]
    other = [
        {
            "time": "2026-11-20T10:05:00.000000Z",
            "type": "oom_killed",
            "detail": {"instance": A, "source": "logs"},
        }
    ]
    merged = merge_events(machine_events(machines(), T0, T1) + logs + metric + other)
    ooms = [e for e in merged if e["type"] == "oom_killed"]
    assert [e["detail"]["instance"] for e in ooms] == [B, A]
    b = ooms[0]
    assert b["time"] == "2026-11-20T10:04:52.641000Z"  # the Machines API's time wins
    assert b["detail"]["source"] == "machines_api"
    assert sorted(b["detail"]["sources"]) == ["logs", "machines_api", "prometheus"]
    assert b["detail"]["pid"] == 512  # filled in from the kernel line
    assert sum(1 for e in merged if e["type"] == "restart") == 1


def test_read_flyctl_logs_runs_flyctl_without_the_token(tmp_path: Path) -> None:
    argv_file = tmp_path / "argv.json"
    script = tmp_path / "flyctl"
    script.write_text(
        f"#!{sys.executable}\nimport json, sys\n"
        f"json.dump(sys.argv[1:], open({str(argv_file)!r}, 'w'))\n"
        f"sys.stdout.write(open({str(FIXTURES / 'fly_logs.jsonl')!r}).read())\n"
    )
    script.chmod(script.stat().st_mode | stat.S_IEXEC)
    parsed = read_flyctl_logs(flyapi.APP, flyctl=str(script))
    assert json.loads(argv_file.read_text()) == ["logs", "-a", flyapi.APP, "--no-tail", "--json"]
    assert [e["type"] for e in parsed.events] == ["oom_killed", "oom_killed"]
    failing = tmp_path / "fly"
    failing.write_text("#!/bin/sh\necho 'Error: no access token available' >&2\nexit 1\n")
    failing.chmod(0o755)
    with pytest.raises(FlyError, match="exit 1.*no access token"):
        read_flyctl_logs(flyapi.APP, flyctl=str(failing))


def test_parse_time_variants() -> None:
    assert parse_time("2026-11-20T10:04:52.118020331Z") == datetime(
        2026, 11, 20, 10, 4, 52, 118020, tzinfo=UTC
    )
    assert parse_time("2026-11-20T12:04:52+02:00") == datetime(2026, 11, 20, 10, 4, 52, tzinfo=UTC)
    assert parse_time("yesterday") is None
    assert os.environ.get(TOKEN_ENV, "") != TOKEN  # the tests never export the token globally
