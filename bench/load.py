"""HTTP load generator (run as its own process): N keep-alive connections in a closed loop.

    python -m bench.load http://127.0.0.1:8000/v1/ats/online/SKU-1 --connections 32 --seconds 5

A minimal HTTP/1.1 client on asyncio streams (and uvloop when installed), so that the load
generator is not the bottleneck the way a full client library is. With `--body`, each request is
a POST of the body with `{n}` replaced by a unique text, `{i}` by a unique number and each `{r}`
by a random number below `--spread` (five digits). `--sign SECRET` makes each POST a signed
Shopify webhook delivery (HMAC, webhook id, `--topic`), without a bearer token. `--rate R` paces
the requests at R per second over all connections (an open loop) instead of a closed loop.
Prints one JSON line: rps, p50_ms, p99_ms, requests, errors (answers with status >= 400 or
broken connections), statuses (answers by status).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import time
import uuid
from urllib.parse import urlparse

from bench.common import percentile

SHOP = "bench-shop.myshopify.com"


def _request(
    method: str, host: str, path: str, token: str, body: bytes | None, extra: tuple[str, ...] = ()
) -> bytes:
    head = [f"{method} {path} HTTP/1.1", f"Host: {host}", "Connection: keep-alive", *extra]
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


def _filler(body: str, spread: int) -> object:
    """The body template's filler: `{n}`, `{i}` and `{r}` replaced (see the module docstring)."""
    run_id = uuid.uuid4().hex[:8]
    base = random.randrange(10**6, 10**7) * 10**8  # unique numbers of this run (Shopify ids are numbers)
    counter = iter(range(10**8))
    parts = body.split("{r}")

    def fill() -> tuple[str, bytes]:
        k = next(counter)
        text = parts[0]
        for part in parts[1:]:
            text += f"{random.randrange(spread):05d}" + part
        unique = f"{run_id}-{k}"
        return unique, text.replace("{n}", unique).replace("{i}", str(base + k)).encode()

    return fill


async def run(
    url: str,
    connections: int,
    seconds: float,
    token: str,
    body: str | None,
    spread: int = 1,
    sign: str = "",
    topic: str = "orders/create",
    rate: float = 0.0,
) -> dict[str, object]:
    u = urlparse(url)
    host, port, path = u.hostname or "127.0.0.1", u.port or 80, u.path or "/"
    latencies: list[float] = []
    statuses: dict[int, int] = {}
    errors = 0
    deadline = time.monotonic() + seconds
    get = _request("GET", host, path, token, None)  # the same bytes every time
    fill = _filler(body, spread) if body else None
    slots = iter(range(10**9))
    t_start = time.monotonic()

    def next_request() -> bytes:
        if fill is None:
            return get
        unique, payload = fill()  # type: ignore[operator]  # _filler's closure
        if not sign:
            return _request("POST", host, path, token, payload)
        from adapters.shopify import sign as hmac_of

        headers = (
            f"X-Shopify-Hmac-Sha256: {hmac_of(payload, sign)}",
            f"X-Shopify-Webhook-Id: {unique}",
            f"X-Shopify-Topic: {topic}",
            f"X-Shopify-Shop-Domain: {SHOP}",
        )
        return _request("POST", host, path, "", payload, headers)

    async def worker() -> None:
        nonlocal errors
        reader, writer = await asyncio.open_connection(host, port)
        try:
            while time.monotonic() < deadline:
                if rate:
                    due = t_start + next(slots) / rate
                    if due >= deadline:
                        return
                    delay = due - time.monotonic()
                    if delay > 0:
                        await asyncio.sleep(delay)
                request = next_request()
                t0 = time.perf_counter()
                writer.write(request)
                try:
                    status = await _read_response(reader)
                except (asyncio.IncompleteReadError, ConnectionError):
                    errors += 1
                    return
                latencies.append((time.perf_counter() - t0) * 1000)
                statuses[status] = statuses.get(status, 0) + 1
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
        "statuses": statuses,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("url")
    ap.add_argument("--connections", type=int, default=32)
    ap.add_argument("--seconds", type=float, default=5.0)
    ap.add_argument("--token", default="")
    ap.add_argument("--body", default=None)
    ap.add_argument("--spread", type=int, default=1)
    ap.add_argument("--sign", default="")
    ap.add_argument("--topic", default="orders/create")
    ap.add_argument("--rate", type=float, default=0.0)
    a = ap.parse_args()
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    figures = asyncio.run(
        run(a.url, a.connections, a.seconds, a.token, a.body, a.spread, a.sign, a.topic, a.rate)
    )
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
