"""HTTP load generator (run as its own process): N keep-alive connections in a closed loop.

    python -m bench.load http://127.0.0.1:8000/v1/ats/online/SKU-1 --connections 32 --seconds 5

A minimal HTTP/1.1 client on asyncio streams (and uvloop when installed), so that the load
generator is not the bottleneck the way a full client library is. With `--body`, each request is
a POST of the body with `{n}` replaced by a unique number. Prints one JSON line: rps, p50_ms,
p99_ms, requests, errors (answers with status >= 400 or broken connections).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
import uuid
from urllib.parse import urlparse

from bench.common import percentile


def _request(method: str, host: str, path: str, token: str, body: bytes | None) -> bytes:
    head = [f"{method} {path} HTTP/1.1", f"Host: {host}", "Connection: keep-alive"]
    if token:
        head.append(f"Authorization: Bearer {token}")
    if body is not None:
        head += ["Content-Type: application/json", f"Content-Length: {len(body)}"]
    return ("\r\n".join(head) + "\r\n\r\n").encode() + (body or b"")


async def _read_response(reader: asyncio.StreamReader) -> int:
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    status = int(lines[0].split()[1])
    length = 0
    for line in lines[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    if length:
        await reader.readexactly(length)
    return status


async def run(url: str, connections: int, seconds: float, token: str, body: str | None) -> dict[str, float]:
    u = urlparse(url)
    host, port, path = u.hostname or "127.0.0.1", u.port or 80, u.path or "/"
    latencies: list[float] = []
    errors = 0
    run_id = uuid.uuid4().hex[:8]
    counter = iter(range(10**9))
    deadline = time.monotonic() + seconds
    get = _request("GET", host, path, token, None)  # the same bytes every time

    async def worker() -> None:
        nonlocal errors
        reader, writer = await asyncio.open_connection(host, port)
        try:
            while time.monotonic() < deadline:
                if body:
                    payload = body.replace("{n}", f"{run_id}-{next(counter)}").encode()
                    request = _request("POST", host, path, token, payload)
                else:
                    request = get
                t0 = time.perf_counter()
                writer.write(request)
                try:
                    status = await _read_response(reader)
                except (asyncio.IncompleteReadError, ConnectionError):
                    errors += 1
                    return
                latencies.append((time.perf_counter() - t0) * 1000)
                if status >= 400:
                    errors += 1
        finally:
            writer.close()

    t0 = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(connections)))
    elapsed = time.perf_counter() - t0
    return {
        "rps": round(len(latencies) / elapsed, 1),
        "p50_ms": round(percentile(latencies, 0.5), 2),
        "p99_ms": round(percentile(latencies, 0.99), 2),
        "requests": len(latencies),
        "errors": errors,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("url")
    ap.add_argument("--connections", type=int, default=32)
    ap.add_argument("--seconds", type=float, default=5.0)
    ap.add_argument("--token", default="")
    ap.add_argument("--body", default=None)
    a = ap.parse_args()
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    print(json.dumps(asyncio.run(run(a.url, a.connections, a.seconds, a.token, a.body))))


if __name__ == "__main__":
    main()
