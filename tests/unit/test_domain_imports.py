"""The domain (`ledger/`) stands alone: no web framework, database driver, broker or adapter."""

from __future__ import annotations

import ast
from pathlib import Path

import ledger

FORBIDDEN = {
    "fastapi",
    "starlette",
    "psycopg",
    "psycopg_pool",
    "nats",
    "uvicorn",
    "api",
    "adapters",
    "projections",
    "bootstrap",
    "cli",
    "bench",
}
DOMAIN = Path(ledger.__file__).parent


def imported_roots(source: str) -> set[str]:
    roots = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            roots.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            roots.add(node.module.split(".")[0])
        elif isinstance(node, ast.Call) and getattr(node.func, "attr", getattr(node.func, "id", "")) in (
            "import_module",
            "__import__",
        ):
            if node.args and isinstance(node.args[0], ast.Constant) and isinstance(node.args[0].value, str):
                roots.add(node.args[0].value.split(".")[0])
    return roots


def test_the_domain_has_modules_to_inspect():
    names = {p.name for p in DOMAIN.glob("*.py")}
    assert {"stock.py", "orders.py", "application.py", "commands.py"} <= names


def test_no_domain_module_imports_a_framework_driver_broker_or_adapter():
    offenders = {
        str(path.relative_to(DOMAIN.parent)): sorted(imported_roots(path.read_text()) & FORBIDDEN)
        for path in sorted(DOMAIN.rglob("*.py"))
    }
    assert {k: v for k, v in offenders.items() if v} == {}


def test_the_import_check_would_catch_each_forbidden_form():
    source = (
        "import fastapi\nfrom psycopg.rows import dict_row\nimport nats.js as js\n"
        "from adapters import bootstrap\nimportlib.import_module('starlette.requests')\n"
        "if TYPE_CHECKING:\n    from api.deps import X\n"
    )
    assert imported_roots(source) & FORBIDDEN == {
        "fastapi",
        "psycopg",
        "nats",
        "adapters",
        "starlette",
        "api",
    }
    assert imported_roots("from . import stock\nfrom ledger.errors import LedgerError\n") == {"ledger"}
