"""The ATS-over-time chart: step lines per channel, as SVG geometry (no chart library).

`draw()` turns each channel's series (`projections.explain.series`) into an SVG path, with
axes labels, in a fixed view box; the template writes it inline.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

WIDTH, HEIGHT = 720, 240
LEFT, RIGHT, TOP, BOTTOM = 48, 12, 12, 28
COLOURS = ("#1f6feb", "#d1242f", "#1a7f37", "#9a6700", "#8250df", "#bf3989")


@dataclass
class Line:
    channel: str
    colour: str
    path: str
    points: list[dict[str, Any]] = field(default_factory=list)  # {x, y, label} for hover


@dataclass
class Chart:
    lines: list[Line]
    y_ticks: list[tuple[float, int]]
    x_labels: list[tuple[float, str]]
    width: int = WIDTH
    height: int = HEIGHT

    @property
    def empty(self) -> bool:
        return not any(line.points for line in self.lines)


def _moment(s: str) -> float:
    return datetime.fromisoformat(s).timestamp()


def draw(series: dict[str, list[dict[str, Any]]], now: datetime | None = None) -> Chart:
    """Step paths for each channel's [{at, available, position}] (oldest first)."""
    now = now or datetime.now(UTC)
    points = [p for s in series.values() for p in s]
    if not points:
        return Chart([], [], [])
    t0 = min(_moment(p["at"]) for p in points)
    t1 = max(now.timestamp(), max(_moment(p["at"]) for p in points))
    span = max(t1 - t0, 1.0)
    top = max(max(p["available"] for p in points), 1)
    w, h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM

    def x(t: float) -> float:
        return round(LEFT + (t - t0) / span * w, 1)

    def y(v: int) -> float:
        return round(TOP + h - v / top * h, 1)

    lines = []
    for i, (channel, s) in enumerate(sorted(series.items())):
        if not s:
            lines.append(Line(channel, COLOURS[i % len(COLOURS)], ""))
            continue
        d = [f"M{x(_moment(s[0]['at']))},{y(s[0]['available'])}"]
        for p in s[1:]:
            d.append(f"H{x(_moment(p['at']))}")
            d.append(f"V{y(p['available'])}")
        d.append(f"H{x(t1)}")
        marks = [
            {
                "x": x(_moment(p["at"])),
                "y": y(p["available"]),
                "label": f"{channel}: {p['available']} at {p['at'][:19]}Z (position {p['position']})",
            }
            for p in s
        ]
        lines.append(Line(channel, COLOURS[i % len(COLOURS)], " ".join(d), marks))
    ticks = sorted({0, top // 2, top})
    labels = [
        (x(t0), datetime.fromtimestamp(t0, UTC).strftime("%m-%d %H:%M")),
        (x(t1), datetime.fromtimestamp(t1, UTC).strftime("%m-%d %H:%M")),
    ]
    return Chart(lines, [(y(v), v) for v in ticks], labels)
