"""Every shell command in README.md and docs/*.md runs as written (docs/docs-test.md).

The commands are taken from the fenced blocks (``bash``, ``sh``, ``shell``, ``console``,
``cron``, and the ``run:`` steps of a GitHub workflow in a ``yaml`` block) and run one by
one, in document order, with ``bash`` from the root of a fresh copy of the working tree (the
files git would commit; no ``runs/``, no caches). The copy reuses this ``.venv`` (a symlink)
and imports its own code (``PYTHONPATH``). Only stand-ins go through the environment: short
time scales, a free port for ``make serve``, and a local stack as the deployed app
(:data:`STAND_INS`). A command that cannot run here carries a visible reason in the doc;
an unmarked command that cannot be parsed fails. The counts are printed at the end of the
pytest run (``tests/conftest.py``).
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import signal
import subprocess
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import psutil
import pytest
import yaml

from perflib.run.stack import LocalStack, free_port
from perflib.tooling import REPO_ROOT

pytestmark = [pytest.mark.k6, pytest.mark.slow, pytest.mark.timeout(1800)]  # all pages run in setup

DOCS = [REPO_ROOT / "README.md", *sorted((REPO_ROOT / "docs").glob("*.md"))]
SHELL_LANGS = {"bash", "sh", "shell", "console"}
#: fences that are not shell: shown as they are
OTHER_LANGS = {"python", "toml", "yaml", "text", "json", "ini", "js", "javascript", "diff"}
FENCE = re.compile(r"^```\s*([\w+-]*)\s*$")
NOT_RUN = re.compile(r"not run by the docs test:\s*(.+?)[.*_\s]*$", re.IGNORECASE)
EXIT_CODE = re.compile(r"\bexit code (\d+)\b")
SERVER = "runs until Ctrl-C"
#: what a runnable command must not contain: a synopsis or a placeholder, not a command
PLACEHOLDER = re.compile(r"…|\.\.\.|<[A-Za-z][^>]*>|\[--|\bRUN_DIR\b|\|[a-z]+\]")
TIME_SCALE = "0.05"
COMMAND_TIMEOUT = 600


@dataclass
class Command:
    where: str  # "docs/runs.md:7"
    text: str
    kind: str  # "run" | "server" | "marked" | "invalid"
    reason: str = ""  # marked: why it is not run; invalid: what is wrong
    expect: int = 0
    env: dict[str, str] | None = None  # a crontab's or workflow's own variables

    def __str__(self) -> str:
        return self.where


def split_comment(line: str) -> tuple[str, str]:
    """``(code, comment)`` of one shell line: a ``#`` starting a word outside quotes."""
    quote = ""
    for i, ch in enumerate(line):
        if quote:
            if ch == quote:
                quote = ""
            elif ch == "\\" and quote == '"':
                continue
        elif ch in "'\"":
            quote = ch
        elif ch == "#" and (i == 0 or line[i - 1].isspace()):
            return line[:i].rstrip(), line[i:]
    return line, ""


def _classify(where: str, text: str, block_reason: str, env: dict | None = None) -> Command:
    lines = text.splitlines()
    code, comment = split_comment(lines[-1])
    marked = NOT_RUN.search(comment)
    if block_reason or marked:
        return Command(where, text, "marked", block_reason or marked.group(1), env=env)
    body = "\n".join([*lines[:-1], code])
    try:
        shlex.split(body)
    except ValueError as exc:
        return Command(where, text, "invalid", f"cannot be parsed: {exc}")
    if "<<" in body:
        return Command(where, text, "invalid", "here-documents are not supported")
    if PLACEHOLDER.search(body):
        return Command(where, text, "invalid", "a synopsis or placeholder, not a command")
    expect = EXIT_CODE.search(comment)
    kind = "server" if SERVER in comment else "run"
    return Command(where, text, kind, expect=int(expect.group(1)) if expect else 0, env=env)


def _shell_commands(lines: list[str], first: int, rel: str, reason: str, lang: str) -> list:
    out, buf, start = [], [], first
    for offset, raw in enumerate(lines):
        line = raw[2:] if lang == "console" and raw.startswith("$ ") else raw
        if lang == "console" and not raw.startswith(("$ ", " ")) and not buf:
            continue  # console output
        if not buf:
            start = first + offset
            if not line.strip() or line.lstrip().startswith("#"):
                continue
        buf.append(line)
        if not line.rstrip().endswith("\\"):
            out.append(_classify(f"{rel}:{start}", "\n".join(buf), reason))
            buf = []
    if buf:
        out.append(Command(f"{rel}:{start}", "\n".join(buf), "invalid", "unfinished line"))
    return out


CRON_VAR = re.compile(r"^([A-Za-z_][A-Za-z0-9_]*)\s*=\s*(.*)$")


def _cron_commands(lines: list[str], first: int, rel: str, reason: str) -> list:
    """A crontab: ``NAME=value`` lines are the jobs' environment; ``\\%`` is ``%``."""
    env, out = {}, []
    for offset, line in enumerate(lines):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        var = CRON_VAR.match(line)
        if var and "=" in line.split()[0]:
            env[var.group(1)] = var.group(2).strip().strip('"')
            continue
        fields = line.split(None, 5)
        where = f"{rel}:{first + offset}"
        if len(fields) < 6:
            out.append(Command(where, line, "invalid", "not a crontab line"))
            continue
        cmd = re.sub(r"(?<!\\)%", "\n", fields[5]).replace("\\%", "%")
        out.append(_classify(where, cmd, reason, env=dict(env)))
    return out


def _workflow_commands(lines: list[str], first: int, rel: str, reason: str) -> list:
    """The ``run:`` steps of a GitHub workflow, each a bash script with the job's env."""
    doc = yaml.safe_load("\n".join(lines))
    out = []
    for job in (doc.get("jobs") or {}).values():
        env = {k: str(v) for k, v in (job.get("env") or {}).items()}
        for step in job.get("steps") or []:
            if "run" not in step:
                continue  # an action (`uses:`), not a shell command
            text = step["run"].rstrip("\n")
            line = next((i for i, x in enumerate(lines) if text.splitlines()[0].strip() in x), 0)
            out.append(_classify(f"{rel}:{first + line}", text, reason, env=env))
    return out


def extract(path: Path) -> list[Command]:
    rel = str(path.relative_to(REPO_ROOT)) if path.is_relative_to(REPO_ROOT) else path.name
    lines = path.read_text(encoding="utf-8").splitlines()
    commands: list[Command] = []
    i = 0
    while i < len(lines):
        m = FENCE.match(lines[i])
        if not m:
            i += 1
            continue
        lang, start = m.group(1).lower(), i
        j = i + 1
        while j < len(lines) and not lines[j].startswith("```"):
            j += 1
        body = lines[i + 1 : j]
        above = next((x for x in reversed(lines[:start]) if x.strip()), "")
        marked = NOT_RUN.search(above)
        reason = marked.group(1) if marked else ""
        where = f"{rel}:{start + 1}"
        if lang in SHELL_LANGS:
            commands += _shell_commands(body, start + 2, rel, reason, lang)
        elif lang == "cron":
            commands += _cron_commands(body, start + 2, rel, reason)
        elif lang == "yaml" and re.search(r"^jobs:", "\n".join(body), re.M):
            commands += _workflow_commands(body, start + 2, rel, reason)
        elif lang not in OTHER_LANGS:
            commands.append(
                Command(where, "\n".join(body), "invalid", f"fence without a known language "
                        f"({lang or 'none'}): tag it (`text` for what is not a command)")
            )  # fmt: skip
        i = j + 1
    return commands


COMMANDS = [c for doc in DOCS for c in extract(doc)]
RUNNABLE = [c for c in COMMANDS if c.kind != "marked"]
EXECUTED: list[Command] = []  # filled as the commands run (the summary counts these)


def counts() -> dict[str, list[Command]]:
    """For the terminal summary (tests/conftest.py)."""
    return {
        "ran": [c for c in COMMANDS if c.kind in ("run", "server")],
        "marked": [c for c in COMMANDS if c.kind == "marked"],
        "invalid": [c for c in COMMANDS if c.kind == "invalid"],
    }


# --- the checkout and the stand-ins ---------------------------------------------------------


def _copy_tree(dest: Path) -> None:
    """The files git would commit (tracked and new, not ignored), as a fresh clone has them."""
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=REPO_ROOT,
        capture_output=True,
        check=True,
    ).stdout.split(b"\0")
    for name in filter(None, (n.decode() for n in listed)):
        src = REPO_ROOT / name
        if src.is_file():
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / name)
    for so in (REPO_ROOT / "perflib" / "ingest").glob(
        "_k6scan*.so"
    ):  # the built C reader, as installed
        shutil.copy2(so, dest / "perflib" / "ingest" / so.name)
    (dest / ".venv").symlink_to(REPO_ROOT / ".venv")
    stamp = REPO_ROOT / ".venv" / ".installed-stamp"
    if stamp.exists():  # `make setup` sees the shared .venv up to date: it must not reinstall
        old = stamp.stat().st_mtime - 60
        for name in ("pyproject.toml", "perflib/ingest/_k6scan.c"):
            os.utime(dest / name, (old, old))


@pytest.fixture(scope="module")
def checkout(tmp_path_factory):
    root = tmp_path_factory.mktemp("checkout")
    _copy_tree(root)
    return root


#: what the docs test sets, and nothing else (docs/docs-test.md lists the same)
def stand_ins(checkout: Path, base_url: str, port: int) -> dict[str, str]:
    return {
        "PERFLIB_TIME_SCALE": TIME_SCALE,  # `perflib run` / `report-job` default --time-scale
        "REPORT_TIME_SCALE": TIME_SCALE,  # `make report`
        "TIME_SCALE": TIME_SCALE,  # k6 scripts run by hand
        "SERVE_PORT": str(port),  # `make serve`: a free port, not 8081
        "BASE_URL": base_url,  # the deployed app of the examples: a local stack
        "PERFLIB_HOME": str(checkout),  # where a crontab finds the checkout
        "PERFLIB_DATABASE_URL": f"sqlite:///{checkout / 'store.db'}",  # one per page, in fact
    }


def _env(checkout: Path, cmd: Command, extra: dict[str, str]) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTEST", "COV_"))}
    for key, value in (cmd.env or {}).items():  # the crontab's / workflow's own variables
        env[key] = "" if "${{" in value else value  # GitHub secrets: not here
    env |= extra
    env["PATH"] = f"{checkout / '.venv' / 'bin'}:{env.get('PATH', '')}"
    env["VIRTUAL_ENV"] = str(checkout / ".venv")
    env["PYTHONPATH"] = str(checkout)  # `perflib` imports the copy's code, not ours
    env.pop("FLY_API_TOKEN", None)
    return env


def _stop_tree(proc: subprocess.Popen) -> list[psutil.Process]:
    """SIGINT to the command's process group (as a terminal's Ctrl-C); survivors after 60 s."""
    tree = psutil.Process(proc.pid).children(recursive=True)
    os.killpg(proc.pid, signal.SIGINT)
    try:
        proc.wait(60)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    _gone, alive = psutil.wait_procs(tree, timeout=10)
    return [p for p in alive if p.status() != psutil.STATUS_ZOMBIE]


def _serve(cmd: Command, checkout: Path, env: dict[str, str], port: int) -> None:
    proc = subprocess.Popen(
        ["bash", "-c", cmd.text],
        cwd=checkout,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    try:
        deadline, healthy = time.monotonic() + 120, False
        while time.monotonic() < deadline and proc.poll() is None and not healthy:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2) as r:
                    healthy = r.status == 200
            except OSError:
                time.sleep(0.5)
        assert healthy, f"{cmd}: never answered /health on port {port}"
        survivors = _stop_tree(proc)
        out = proc.stdout.read() if proc.stdout else ""
        assert not survivors, f"{cmd}: left running after Ctrl-C: {survivors}"
        # make reports a child stopped by SIGINT as its own SIGINT death
        assert proc.returncode in (128 + signal.SIGINT, -signal.SIGINT), out
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def _run_one(cmd: Command, checkout: Path, base_url: str, db: str) -> str | None:
    """Run one command as written; None when it did what the doc says, else why not."""
    port = free_port()
    env = _env(checkout, cmd, stand_ins(checkout, base_url, port) | {"PERFLIB_DATABASE_URL": db})
    EXECUTED.append(cmd)
    if cmd.kind == "server":
        try:
            _serve(cmd, checkout, env, port)
        except AssertionError as exc:
            return str(exc)
        return None
    try:
        proc = subprocess.run(
            ["bash", "-c", cmd.text],
            cwd=checkout,
            env=env,
            capture_output=True,
            text=True,
            timeout=COMMAND_TIMEOUT,
        )
    except subprocess.TimeoutExpired:
        return f"`{cmd.text}` still running after {COMMAND_TIMEOUT} s"
    if proc.returncode == cmd.expect:
        return None
    return (
        f"`{cmd.text}` exited {proc.returncode}, the doc says {cmd.expect}\n"
        f"--- stdout\n{proc.stdout[-3000:]}\n--- stderr\n{proc.stderr[-3000:]}"
    )


@pytest.fixture(scope="module")
def outcomes(request, checkout: Path, tmp_path_factory) -> dict[str, str | None]:
    """Every selected command's outcome. Each page's commands run in order (a page may
    build on its earlier commands); two pages at a time, each with its own results store
    and its own 'deployed app' (a local stack: the docs' BASE_URL), so the test takes
    minutes, not the sum of every page, and one page's load does not slow another's app."""
    wanted = {
        item.callspec.params["cmd"].where
        for item in request.session.items
        if getattr(item, "originalname", "") == "test_documented_command_runs_as_written"
    }
    pages: dict[str, list[Command]] = {}
    for cmd in RUNNABLE:
        if cmd.kind != "invalid" and cmd.where in wanted:
            pages.setdefault(cmd.where.split(":")[0], []).append(cmd)

    def run_page(name: str, cmds: list[Command]) -> dict[str, str | None]:
        slug = name.replace("/", "-")
        db = f"sqlite:///{checkout / ('store-' + slug + '.db')}"
        app = LocalStack(workdir=tmp_path_factory.mktemp(f"app-{slug}"))
        app.start()
        try:
            return {c.where: _run_one(c, checkout, app.base_url, db) for c in cmds}
        finally:
            app.stop()

    results: dict[str, str | None] = {}
    with ThreadPoolExecutor(max_workers=2) as pool:
        for done in pool.map(lambda kv: run_page(*kv), pages.items()):
            results |= done
    return results


@pytest.mark.parametrize("cmd", RUNNABLE, ids=str)
def test_documented_command_runs_as_written(cmd: Command, outcomes) -> None:
    if cmd.kind == "invalid":
        pytest.fail(f"{cmd.where}: {cmd.reason}: {cmd.text!r} (fix it, or mark it: "
                    "docs/docs-test.md)")  # fmt: skip
    problem = outcomes[cmd.where]
    assert problem is None, f"{cmd.where}: {problem}"


def test_extraction_follows_the_documented_rules(tmp_path: Path) -> None:
    """The parser on a sample with every rule of docs/docs-test.md."""
    assert REPO_ROOT / "docs" / "docs-test.md" in DOCS
    text = "\n".join(
        [
            "```bash",
            "make lint       # ruff",
            "perflib run smoke --base-url http://127.0.0.1:9  # exit code 4",
            "make serve      # runs until Ctrl-C",
            "fly deploy      # not run by the docs test: needs a Fly app",
            "perflib run PROFILE [--out DIR]",
            "```",
            "",
            "Not run by the docs test: needs Docker.",
            "",
            "```sh",
            "docker build . \\",
            "  -t x",
            "```",
            "```",
            "untagged",
            "```",
        ]
    )
    fake = tmp_path / "sample.md"
    fake.write_text(text, encoding="utf-8")
    got = [(c.kind, c.expect, c.reason) for c in extract(fake)]
    assert got == [
        ("run", 0, ""),
        ("run", 4, ""),
        ("server", 0, ""),
        ("marked", 0, "needs a Fly app"),
        ("invalid", 0, "a synopsis or placeholder, not a command"),
        ("marked", 0, "needs Docker"),
        ("invalid", 0, got[-1][2]),
    ]
    assert "fence without a known language" in got[-1][2]
