"""Reports of a reconciliation run: CSV for finance, a readable table for the CLI."""

from __future__ import annotations

import csv
import io
from typing import Any

COLUMNS = (
    "reconciliation",
    "source",
    "measure",
    "observed_at",
    "status",
    "sku",
    "location",
    "external_sku",
    "external_location",
    "external",
    "ledger",
    "delta",
    "causes",
    "explanation",
)


def rows(report: dict[str, Any]) -> list[dict[str, Any]]:
    """One row per mismatch (status `drift` or `within-threshold`) and per timing difference."""
    out = []
    for status_of, items in (("mismatch", report["mismatches"]), ("timing", report["timing"])):
        for m in items:
            status = (
                "timing" if status_of == "timing" else ("drift" if m.get("drift") else "within-threshold")
            )
            ext = m.get("external_ids") or {}
            out.append(
                {
                    "reconciliation": report["id"],
                    "source": report["source"],
                    "measure": report["measure"],
                    "observed_at": m.get("observed_at", report["observed_at"]),
                    "status": status,
                    "sku": m["sku"],
                    "location": m["location"],
                    "external_sku": ext.get("sku", m["sku"]),
                    "external_location": ext.get("location", m["location"]),
                    "external": m["external"],
                    "ledger": m["ledger"],
                    "delta": m["delta"],
                    "causes": " ".join(f"{c['kind']}:{c['quantity']:+d}" for c in m["causes"]),
                    "explanation": m["explanation"],
                }
            )
    return out


def _safe(v: Any) -> Any:
    # A cell starting with = + - @ is a formula in a spreadsheet: quote it (CSV injection).
    if isinstance(v, str) and v[:1] in ("=", "+", "-", "@", "\t", "\r"):
        return "'" + v
    return v


def to_csv(report: dict[str, Any]) -> str:
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=COLUMNS, lineterminator="\n")
    w.writeheader()
    for r in rows(report):
        w.writerow({k: _safe(v) for k, v in r.items()})
    return buf.getvalue()


def to_table(report: dict[str, Any]) -> Any:
    """A rich renderable: a summary line and one row per difference."""
    from rich.console import Group
    from rich.table import Table
    from rich.text import Text

    head = Text(
        ("dry run, nothing recorded: " if report.get("dry_run") else "")
        + f"{report['source']} ({report['measure']}) as of {report['observed_at']}: {report['compared']} compared, "
        f"{report['matched']} matched, {len(report['mismatches'])} mismatched, {len(report['timing'])} timing; "
        f"drift exceptions {report['exceptions']['drift']} (opened {report['exceptions']['opened']}, "
        f"closed {report['exceptions']['closed']}); run {report['id']}"
    )
    table = Table("status", "sku", "location", "external", "ledger", "delta", "explanation", show_lines=False)
    for r in rows(report):
        table.add_row(
            r["status"],
            r["sku"],
            r["location"],
            str(r["external"]),
            str(r["ledger"]),
            f"{r['delta']:+d}",
            r["explanation"],
        )
    return Group(head, table)
