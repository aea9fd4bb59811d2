"""Secrets never reach executed notebooks, HTML or logs: checked with planted tokens and a
real papermill run in the project's kernel."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import nbformat
import pytest

from perflib.report import execute_notebook, render_html, secrets

PLANTED = "fly-planted-7Qx93kLmZ"  # not shaped like a Fly token: only the value lookup can find it


@pytest.mark.parametrize(
    ("name", "secret"),
    [
        ("FLY_API_TOKEN", True), ("api_key", True), ("db_password", True), ("client_secret", True),
        ("DIRETRIX_PASS", True), ("PERFLIB_DATABASE_URL", True), ("key", True),
        ("run_dirs", False), ("price_set", False), ("slo_file", False), ("author", False),
        ("passes", False), ("monkey", False), ("presets", False),
    ],
)  # fmt: skip
def test_secret_names(name: str, secret: bool) -> None:
    assert secrets.is_secret_name(name) is secret


def test_secret_values_from_environment() -> None:
    env = {
        "FLY_API_TOKEN": PLANTED,
        "HOME": "/root-home-dir",
        "PERFLIB_DATABASE_URL": "postgresql://u:db-pass-123@h/db",
        "SHORT_TOKEN": "abc",  # too short to be worth redacting everywhere
    }
    values = secrets.secret_values(env)
    assert PLANTED in values and "db-pass-123" in values
    assert "/root-home-dir" not in values and "abc" not in values
    assert values == sorted(values, key=len, reverse=True)


def test_check_parameters_refuses_secret_names() -> None:
    secrets.check_parameters({"run_dirs": [], "price_set": None})
    with pytest.raises(secrets.SecretParameterError, match="fly_api_token") as exc:
        secrets.check_parameters({"run_dirs": [], "fly_api_token": PLANTED})
    assert PLANTED not in str(exc.value)


def test_redact_text_shapes() -> None:
    text = (
        "url postgresql+psycopg2://postgres:hunter2pw@127.0.0.1/test "
        "auth FlyV1 fm2_AbCdEfGhIjKlMn,fo1_xyz header Authorization: Bearer abc.def.ghi"
    )
    out = secrets.redact_text(text)
    for leaked in ("hunter2pw", "fm2_AbCdEfGhIjKlMn", "abc.def.ghi"):
        assert leaked not in out
    assert "postgres:***@127.0.0.1" in out


def _notebook(tmp_path: Path, *code: str) -> Path:
    nb = nbformat.v4.new_notebook()
    params = nbformat.v4.new_code_cell("greeting = 'hi'")
    params.metadata["tags"] = ["parameters"]
    nb.cells = [params, *(nbformat.v4.new_code_cell(c) for c in code)]
    nb.metadata["kernelspec"] = {"name": "perflib", "display_name": "perflib", "language": "python"}
    path = tmp_path / "leaky.ipynb"
    nbformat.write(nb, path)
    return path


def test_redact_notebook_parameters_and_outputs() -> None:
    nb = nbformat.v4.new_notebook()
    injected = nbformat.v4.new_code_cell(f'api_token = "{PLANTED}"\nrun_dirs = []\n')
    injected.metadata["tags"] = ["injected-parameters"]
    out_cell = nbformat.v4.new_code_cell("print(x)")
    out_cell.outputs = [nbformat.v4.new_output("stream", name="stdout", text=f"token={PLANTED}\n")]
    nb.cells = [injected, out_cell]
    nb.metadata["papermill"] = {"parameters": {"api_token": PLANTED, "run_dirs": []}}
    red = secrets.redact_notebook(json.loads(json.dumps(nb)), [PLANTED])
    text = json.dumps(red)
    assert PLANTED not in text
    assert red["metadata"]["papermill"]["parameters"] == {"api_token": "***", "run_dirs": []}
    assert red["cells"][0]["source"].startswith('api_token = "***"')
    assert "run_dirs = []" in red["cells"][0]["source"]


def test_planted_token_does_not_leak_from_a_real_execution(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    capfd: pytest.CaptureFixture[str],
) -> None:
    """The kernel sees the token (it inherits the environment) and prints it, logs it and
    raises with it; none of that survives into the notebook, the HTML or our output."""
    monkeypatch.setenv("FLY_API_TOKEN", PLANTED)
    src = _notebook(
        tmp_path,
        "import os, logging\ntoken = os.environ['FLY_API_TOKEN']\nprint('using', token)\n"
        "logging.getLogger('x').warning('token %s', token)\ntoken",
        "from IPython.display import HTML\nHTML(f'<b>{token}</b>')",
        "raise RuntimeError(f'upstream rejected {token}')",
    )
    caplog.set_level(logging.DEBUG)
    out = tmp_path / "out" / "leaky.ipynb"
    result = execute_notebook(src, out, {"greeting": "hello"}, timeout=120)
    assert (
        not result.ok and result.cell_index == 4
    )  # 0 parameters, 1 injected, 2 print, 3 HTML, 4 raise
    assert "RuntimeError" in (result.error or "")
    html = render_html([out], tmp_path / "out" / "report.html", show_code=True)
    captured = capfd.readouterr()
    nb_text = out.read_text()
    assert "***" in nb_text and "using ***" in nb_text  # the outputs are there, redacted
    for text in (
        nb_text,
        html.read_text(),
        captured.out,
        captured.err,
        caplog.text,
        result.error or "",
    ):
        assert PLANTED not in text
    assert secrets.find_leaks([out, html], [PLANTED]) == []


def test_secret_parameter_is_refused_before_execution(tmp_path: Path) -> None:
    src = _notebook(tmp_path, "print(greeting)")
    out = tmp_path / "out.ipynb"
    with pytest.raises(secrets.SecretParameterError):
        execute_notebook(src, out, {"fly_api_token": PLANTED})
    assert not out.exists()


def test_redacting_log_filter(caplog: pytest.LogCaptureFixture) -> None:
    logger = logging.getLogger("perflib.test.secrets")
    filt = secrets.RedactingFilter([PLANTED])
    logger.addFilter(filt)
    try:
        with caplog.at_level(logging.INFO, logger=logger.name):
            logger.info("calling Fly with %s", PLANTED)
    finally:
        logger.removeFilter(filt)
    assert PLANTED not in caplog.text and "calling Fly with ***" in caplog.text
