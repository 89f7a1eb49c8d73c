"""Every `# type: ignore` names its error code and says why (`# type: ignore[code]  # reason`)."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("ledger", "adapters", "api", "projections", "bootstrap", "cli", "bench", "tests")
IGNORE = re.compile(r"#\s*type:\s*ignore")
WITH_REASON = re.compile(r"# type: ignore\[[-a-z, ]+\]  # \S")


def test_every_type_ignore_carries_its_code_and_a_reason():
    bare = [
        f"{path.relative_to(ROOT)}:{n}"
        for package in PACKAGES
        for path in sorted((ROOT / package).rglob("*.py"))
        for n, line in enumerate(path.read_text().splitlines(), 1)
        if IGNORE.search(line) and not WITH_REASON.search(line) and path != Path(__file__)
    ]
    assert bare == []
