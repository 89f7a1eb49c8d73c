"""HTTP load generator (run as its own process): N connections in a closed loop for S seconds.

    python -m bench.load http://127.0.0.1:8000/v1/ats/online/SKU-1 --connections 32 --seconds 5

With `--body`, each request is a POST of the body with `{n}` replaced by a unique number.
Prints one JSON line: rps, p50_ms, p99_ms, requests, errors.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
import uuid

import httpx


async def run(url: str, connections: int, seconds: float, token: str, body: str | None) -> dict[str, float]:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    if body:
        headers["Content-Type"] = "application/json"
    latencies: list[float] = []
    errors = 0
    run_id = uuid.uuid4().hex[:8]
    counter = iter(range(10**9))
    limits = httpx.Limits(max_connections=connections, max_keepalive_connections=connections)
    async with httpx.AsyncClient(headers=headers, limits=limits, timeout=30) as client:
        deadline = time.monotonic() + seconds

        async def worker() -> None:
            nonlocal errors
            while time.monotonic() < deadline:
                t0 = time.perf_counter()
                if body:
                    resp = await client.post(url, content=body.replace("{n}", f"{run_id}-{next(counter)}"))
                else:
                    resp = await client.get(url)
                latencies.append((time.perf_counter() - t0) * 1000)
                if resp.status_code >= 400:
                    errors += 1

        t0 = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(connections)))
        elapsed = time.perf_counter() - t0
    s = sorted(latencies)
    pick = (lambda q: round(s[min(len(s) - 1, int(q * len(s)))], 2)) if s else (lambda q: 0.0)
    return {"rps": round(len(s) / elapsed, 1), "p50_ms": pick(0.5), "p99_ms": pick(0.99),
            "requests": len(s), "errors": errors}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("url")
    ap.add_argument("--connections", type=int, default=32)
    ap.add_argument("--seconds", type=float, default=5.0)
    ap.add_argument("--token", default="")
    ap.add_argument("--body", default=None)
    a = ap.parse_args()
    print(json.dumps(asyncio.run(run(a.url, a.connections, a.seconds, a.token, a.body))))


if __name__ == "__main__":
    main()
