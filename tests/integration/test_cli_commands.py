"""`ledger reconcile` / `ledger remap` / the tables, run through the real command (Typer's runner)
on a real database: observed-at defaults, --dry-run, exit codes, plain-word errors."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from typer.testing import CliRunner

from adapters.config import Settings
from adapters.exceptions import list_exceptions
from bootstrap import bootstrap
from cli.main import app


@pytest.fixture
def sku(sqlite_url: str, monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv("LEDGER_DATABASE_URL", sqlite_url)
    c = bootstrap(Settings(database_url=sqlite_url))
    a = "SKU-" + uuid.uuid4().hex[:8]
    c.ledger.receive(a, "WH", 6, "po-" + a)
    c.close()
    return a


def _runs_and_drift(sqlite_url: str) -> tuple[int, set[str]]:
    c = bootstrap(Settings(database_url=sqlite_url))
    try:
        runs = len(c.reconciler.runs.recent(limit=1000)) if c.reconciler.runs is not None else 0
        return runs, {e["key"] for e in list_exceptions(c.db, "drift")}
    finally:
        c.close()


def run(*args: str) -> tuple[int, str, str]:
    r = CliRunner().invoke(app, list(args))
    return r.exit_code, r.stdout, r.stderr


def test_reconcile_runs_as_the_readme_shows(sku: str, tmp_path: Path) -> None:
    f = tmp_path / "export.csv"
    f.write_text(f"sku,location,quantity\n{sku},WH,6\n")
    before = datetime.now(UTC)
    code, out, err = run("reconcile", "erp", str(f), "--format", "json")
    assert code == 0, err  # no drift: exit 0
    report = json.loads(out)
    assert before <= datetime.fromisoformat(report["observed_at"]) <= datetime.now(UTC)  # now by default
    assert report["matched"] == 1
    at = "2026-01-02T03:04:05+00:00"
    f.write_text(f"sku,location,quantity,observed_at\n{sku},WH,0,{at}\n")  # before the receipt: 0 matches
    code, out, err = run("reconcile", "erp", str(f), "--format", "json")
    assert code == 0, err
    assert json.loads(out)["observed_at"] == at  # the rows' own moment


def test_dry_run_records_nothing_and_moves_no_exception(sku: str, sqlite_url: str, tmp_path: Path) -> None:
    f = tmp_path / "export.csv"
    f.write_text(f"sku,location,quantity\n{sku},WH,9\n")
    runs, drift = _runs_and_drift(sqlite_url)
    code, out, _ = run("reconcile", "erp", str(f), "--dry-run", "--format", "json")
    assert code == 1  # drift found
    report = json.loads(out)
    assert report["dry_run"] is True and report["exceptions"]["opened"] == 1
    assert _runs_and_drift(sqlite_url) == (runs, drift)
    code, _, _ = run("reconcile", "erp", str(f))
    assert code == 1
    runs, drift = _runs_and_drift(sqlite_url)
    assert f"erp/{sku}/WH" in " ".join(drift) or any(sku in k for k in drift)
    f.write_text(f"sku,location,quantity\n{sku},WH,6\n")
    code, out, _ = run("reconcile", "erp", str(f), "--dry-run", "--format", "json")
    assert code == 0 and json.loads(out)["exceptions"]["closed"] == 1  # would close it
    assert _runs_and_drift(sqlite_url) == (runs, drift)  # but did not


@pytest.mark.parametrize(
    ("content", "args", "words"),
    [
        ("sku,location,quantity\nA,WH,abc\n", [], "line 2: quantity must be a whole number, got 'abc'"),
        ("sku,location,quantity\nA,,3\n", [], "line 2: location is missing"),
        ("sku,quantity\nA,3\n", [], "needs the columns sku, location, quantity"),
        ('{"levels": [{"sku": "A", "location": "WH"}]}', [], "levels[0]: quantity is missing"),
        (
            '{"levels": [{"sku": "A", "location": "WH", "quantity": 1.5}]}',
            [],
            "quantity must be a whole number",
        ),
        ('{"levels": ', [], "is not valid JSON"),
        ("sku,location,quantity,observed_at\nA,WH,1,yesterday\n", [], "observed_at must be an RFC 3339 time"),
        (
            "sku,location,quantity\nA,WH,1\n",
            ["--observed-at", "noon"],
            "--observed-at must be an RFC 3339 time",
        ),
        ("sku,location,quantity\nA,WH,1\n", ["--format", "xml"], "--format must be table, json or csv"),
    ],
)
def test_bad_input_is_exit_2_in_plain_words(
    sku: str, tmp_path: Path, content: str, args: list[str], words: str
) -> None:
    f = tmp_path / "bad.csv"
    f.write_text(content)
    code, out, err = run("reconcile", "erp", str(f), *args)
    assert code == 2 and out == ""
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("ledger reconcile: ") and words in lines[0], err
    for leak in ("was None", "invalid literal", "KeyError", "Traceback"):
        assert leak not in err


def test_a_missing_file_is_exit_2(sku: str, tmp_path: Path) -> None:
    code, _, err = run("reconcile", "erp", str(tmp_path / "missing.csv"))
    assert code == 2 and "cannot read" in err and "No such file" in err


def test_help_documents_exit_codes_and_the_observed_at_default() -> None:
    code, out, _ = run("reconcile", "--help")
    text = " ".join(out.split())
    assert code == 0
    assert "0 no drift; 1 drift found" in text and "2 bad input" in text
    assert "--dry-run" in text and "else now" in text


def test_remap_of_a_mapping_that_does_not_exist_is_refused(sku: str) -> None:
    code, out, err = run("remap", "erp", "sku", "NEVER-MAPPED")
    assert code == 2 and out == ""
    assert err.strip().splitlines() == [
        "ledger remap: there is no erp sku mapping for 'NEVER-MAPPED'; "
        "set it first with `ledger mappings set erp sku NEVER-MAPPED <canonical>`"
    ]
    assert run("mappings", "set", "erp", "sku", "NEVER-MAPPED", sku)[0] == 0
    assert run("remap", "erp", "sku", "NEVER-MAPPED")[0] == 0


def test_tables_wrap_long_cells_instead_of_cutting_them(sku: str, tmp_path: Path) -> None:
    code_id = "SUPPLIER-CODE-" + "x" * 70 + "-END"
    assert run("mappings", "set", "erp", "sku", code_id, sku)[0] == 0
    code, out, _ = run("mappings", "list")
    assert code == 0
    assert "…" not in out
    assert max(len(line) for line in out.splitlines()) <= 80
    assert "-END" in out  # the end of the long id is printed, on a later line
    f = tmp_path / "levels.csv"
    f.write_text(f"sku,location,quantity\n{sku},WH,1\n{sku},STORE-{'Q' * 60},2\n")
    code, out, _ = run(
        "reconcile", "erp", str(f), "--observed-at", (datetime.now(UTC) + timedelta(seconds=1)).isoformat()
    )
    assert code == 1 and "…" not in out and out.count("Q") == 60  # every character, folded


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["--safety-stock", "abc"], "--safety-stock must be a whole number, got 'abc'"),
        (["--buffer", "lots"], "--buffer must be units (5) or a percentage (10%), got 'lots'"),
        (["--buffer", "5x%"], "--buffer must be units (5) or a percentage (10%), got '5x'"),
        (["--override", "A"], "--override must be SKU=N, got 'A'"),
        (["--override", "A=b"], "--override A must be a whole number, got 'b'"),
        (["--buffer", "120%"], "a buffer percentage is a whole number from 0 to 100"),
        (["--include-incoming-days", "x"], "--include-incoming-days must be a whole number, got 'x'"),
        (["--include-incoming-days", "4000"], "include_incoming_days is a whole number from 0 to 3650"),
    ],
)
def test_channel_policy_options_are_checked_in_plain_words(sku: str, args: list[str], words: str) -> None:
    code, out, err = run("channels", "set", "web", "--location", "WH", *args)
    assert code == 2 and out == ""
    assert err.strip().splitlines() == [f"invalid policy: {words}"]


def test_an_unknown_reconcile_source_is_refused_before_the_file_is_read(tmp_path: Path) -> None:
    code, _, err = run("reconcile", "nowhere", str(tmp_path / "missing.csv"))
    assert code == 2 and err.strip() == "ledger reconcile: SOURCE must be shopify, erp or pos, got 'nowhere'"


def test_a_channel_may_count_incoming_units_from_the_command_line(sku: str) -> None:
    code, out, err = run("channels", "set", "web", "--location", "WH", "--include-incoming-days", "5")
    assert code == 0, err
    assert json.loads(out)["include_incoming_days"] == 5
