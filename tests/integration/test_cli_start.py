"""The real `ledger` command in a subprocess: one-line start errors with exit 2, and the warning
for an empty webhook secret. Waits on the process (or on its "serving" line), never on a clock."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = str(Path(__file__).resolve().parents[2])


def ledger(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    full = {**_base_env(), **env}
    return subprocess.run(
        [sys.executable, "-m", "cli.main", *args],
        env=full,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )


def _base_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LEDGER_")}
    return {**env, "PYTHONPATH": ROOT}


@pytest.fixture
def silent_server() -> Iterator[int]:
    """A port that accepts TCP connections and never answers (a stalled PostgreSQL)."""
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    s.listen(16)
    yield s.getsockname()[1]
    s.close()


def _closed_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def _one_line(done: subprocess.CompletedProcess[str]) -> str:
    assert done.returncode == 2, (done.returncode, done.stdout, done.stderr)
    assert "Traceback" not in done.stderr
    lines = [line for line in done.stderr.splitlines() if not line.startswith("warning:")]
    assert len(lines) == 1, done.stderr
    return lines[0]


@pytest.mark.parametrize("command", [["serve"], ["worker"], ["keys", "list"], ["projections", "status"]])
def test_a_bad_variable_fails_every_command_with_one_line(command: list[str]) -> None:
    done = ledger(*command, LEDGER_RECONCILE_THRESHOLDS="erp=lots")
    line = _one_line(done)
    assert line.startswith(
        "LEDGER_RECONCILE_THRESHOLDS: threshold 'erp=lots' is not source=absolute/percent%"
    )
    assert done.stdout == ""


def test_an_unreachable_database_is_one_line_without_the_password() -> None:
    port = _closed_port()
    done = ledger("serve", LEDGER_DATABASE_URL=f"postgresql://root:s3cret-pw@127.0.0.1:{port}/test")
    line = _one_line(done)
    assert line.startswith(f"ledger serve: cannot reach the database at 127.0.0.1:{port}: "), line
    assert "s3cret-pw" not in done.stderr + done.stdout
    assert "serving" not in done.stdout


def test_a_stalled_database_gives_up_after_the_urls_connect_timeout(silent_server: int) -> None:
    url = f"postgresql://root@127.0.0.1:{silent_server}/test?connect_timeout=1"
    line = _one_line(ledger("keys", "list", LEDGER_DATABASE_URL=url))
    assert line.startswith(f"ledger keys list: cannot reach the database at 127.0.0.1:{silent_server}: ")
    assert "timeout" in line


def test_a_busy_port_is_one_line_before_serving(tmp_path: Path) -> None:
    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen(1)
    port = taken.getsockname()[1]
    try:
        done = ledger("serve", "--port", str(port), LEDGER_DATABASE_URL=f"sqlite:///{tmp_path}/ledger.db")
    finally:
        taken.close()
    line = _one_line(done)
    assert line == f"ledger serve: cannot bind 127.0.0.1:{port}: the port is already in use"
    assert "serving" not in done.stdout


def test_an_empty_webhook_secret_is_warned_about_at_start(tmp_path: Path) -> None:
    port = _closed_port()
    env = {**_base_env(), "LEDGER_DATABASE_URL": f"sqlite:///{tmp_path}/ledger.db"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "cli.main", "serve", "--port", str(port), "--no-workers"],
        env=env,
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        for line in proc.stdout:  # waits for the line that says it serves
            if line.startswith("ledger serving on"):
                break
        else:
            pytest.fail(f"serve ended: {proc.wait()} {proc.stderr.read() if proc.stderr else ''}")
    finally:
        proc.terminate()
        proc.wait(timeout=60)
    assert proc.stderr is not None
    err = proc.stderr.read()
    assert "warning: LEDGER_SHOPIFY_WEBHOOK_SECRETS is empty" in err, err


def test_several_api_processes_on_sqlite_are_refused_in_one_line(tmp_path: Path) -> None:
    done = ledger(
        "serve",
        "--workers",
        "2",
        "--port",
        str(_closed_port()),
        LEDGER_DATABASE_URL=f"sqlite:///{tmp_path}/ledger.db",
    )
    assert _one_line(done).startswith("ledger serve: --workers N > 1 needs PostgreSQL")
    assert "serving" not in done.stdout
