"""Applying inbox messages: translate through the current mappings, submit, record the outcome; and remap.

`Intake.step()` claims received messages (`Inbox.claim`: on PostgreSQL no two workers hold the
same row) and `Intake.apply(rows)` applies them in runs: the run's mappings are looked up together,
its messages translated side by side, every resulting command submitted to the group-commit writer
before waiting for any, and the outcomes recorded in one transaction. Messages of one order apply
in id order (a later one goes to the next run), other orders alongside. Every command carries
`cause = {source, reference, correlation_id, causation_id, mapping_version, mappings}`:
`reference` and `causation_id` are the inbox id, `mapping_version` the newest mapping version
the translation used, and `mappings` the `MappingUse`s that chose its SKU and locations (one per
leg: a transfer names both locations' mappings).

`Remapper.remap(source, kind, external_id)` re-translates the messages that used a mapping
after it was fixed: every movement they posted on a stream whose SKU or location that mapping's
use chose (only that leg of a transfer), and that now maps elsewhere, gets a `CorrectMovement`
(reversal on the wrong stream, re-posting on the right one, both naming the original). A Shopify
order captured through a variant mapping (`shopify/sku/{variant}`) that now maps elsewhere gets a
`RemapOrderLine` per open line: the reservation moves from the wrong SKU to the right one and the
order records `LineRemapped` (the line, both SKUs, the mapping fix); a line already shipped is
refused and listed. Parked messages that asked for the mapping are applied. Nothing is deleted.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import nullcontext
from dataclasses import dataclass, field, replace
from typing import Any

import orjson
from pydantic import ValidationError

from adapters import erp, pos, shopify
from adapters.exceptions import close_exception, open_exception
from adapters.inbox import Finished, Inbox, Status
from adapters.loop import Loop
from adapters.mappings import Lookup, Prefetched, SqlMappingStore, codes_in, mapping_key
from adapters.metrics import INBOX_MESSAGES
from adapters.persistence.db import Tx, is_outage
from adapters.translate import (
    Apply,
    Context,
    Duplicate,
    MappingUse,
    Park,
    Reject,
    Translation,
    Wait,
    WaitKey,
    ref,
    uses_in_cause,
)
from ledger import commands as c
from ledger.bounds import order_id as order_uuid
from ledger.bounds import stock_id
from ledger.errors import LedgerError, OrderNotFoundError, VersionConflictError
from ledger.service import Ledger
from ledger.stock import SkuLocation, movement_effect
from ledger.writer import StorageError

log = logging.getLogger("ledger.intake")

Translator = Callable[[dict[str, Any], Any, Lookup, Context], Translation]
TRANSLATORS: dict[str, Translator] = {
    "shopify": shopify.translate,
    "pos": pos.translate,
    "erp": erp.translate,
}


def _error(e: BaseException) -> str:
    return f"{getattr(e, 'code', type(e).__name__)}: {e}"[:300]


@dataclass
class Plan:
    """One message of a run: its row, what it translated to, the mappings it asked for, its commands."""

    row: dict[str, Any]
    translation: Translation
    lookup: Lookup
    futures: list[Future[Any]] = field(default_factory=list)


@dataclass(frozen=True)
class Verdict:
    """A message's new status, with its reason and (waiting) what it waits for."""

    status: Status
    reason: str | None = None
    wait_for: WaitKey | None = None


class Intake:
    def __init__(self, ledger: Ledger, inbox: Inbox, mappings: SqlMappingStore, translators: int = 4) -> None:
        self.ledger = ledger
        self.inbox = inbox
        self.mappings = mappings
        self.ctx = Context(ledger.history, inbox.db)
        self.translators = translators  # threads translating a run side by side (PostgreSQL)

    # -------------------------------------------------------------- apply

    def step(self, limit: int = 200) -> int:
        """Claims received messages and applies them; the number whose status changed."""
        with self.inbox.claim(limit) as claim:
            if not claim.rows:
                return 0
            held = {k for r in claim.held if (k := _order_key(r)) is not None}
            n = len(self.apply(claim.rows, claim.tx, held))
        self.inbox.refresh_metrics()  # after the claim's transaction: it counts what is committed
        return n

    def translate(self, row: dict[str, Any], lookup: Lookup, ctx: Context | None = None) -> Translation:
        """The message's outcome; a message no translator can read is rejected with the reason."""
        try:
            payload = row.get("payload")
            if payload is None:
                payload = orjson.loads(row["body"] if "body" in row else self.inbox.body(row["id"]))
            return TRANSLATORS[row["source"]](row, payload, lookup, ctx or self.ctx)
        except (ValueError, ValidationError, LedgerError, KeyError) as e:
            return Reject(f"cannot translate: {_error(e)}")
        except Exception as e:  # a message that breaks a translator must not block the inbox
            if is_outage(e):  # the database is out of reach: the message stays due, a later step retries
                raise
            log.exception("translating inbox message %s failed", row["id"])
            return Reject(f"cannot translate: {type(e).__name__}")

    def apply(
        self, rows: list[dict[str, Any]], tx: Tx | None = None, held: set[str] | frozenset[str] = frozenset()
    ) -> dict[int, Status]:
        """Applies messages, those of one order in id order; returns each message's new status.

        A run translates every message (mappings looked up together), submits all their commands
        to the writer before waiting for any, and records the outcomes in one transaction (`tx`
        when the caller holds the rows, else a new one). A message about an order that an earlier
        message of the run acts on was translated against state that message changes: it and the
        later messages of that order go to the next run, the other orders go on. Messages of an
        order in `held` (an older message of it is with another worker) stay received.
        """
        statuses: dict[int, Status] = {}
        pending = rows
        while pending:
            done, pending = self._run(pending, tx, set(held))
            statuses |= done
            if not done:
                break
        if tx is None:
            self.inbox.refresh_metrics()
        return statuses

    def _run(
        self, rows: list[dict[str, Any]], tx: Tx | None, blocked: set[str]
    ) -> tuple[dict[int, Status], list[dict[str, Any]]]:
        """One run: (the statuses recorded, the messages kept for the next run)."""
        mappings = Prefetched(self.mappings)
        for source in {r["source"] for r in rows}:
            mappings.prefetch(
                source,
                codes_in(
                    *[_payload(r) for r in rows if r["source"] == source], *[r.get("headers") for r in rows]
                ),
            )
        # Translate the first message of each order (and every message about none) together: a
        # later message of an order goes to the next run whatever it says.
        seen: set[str] = set(blocked)
        first: list[dict[str, Any]] = []
        for row in rows:
            key = _order_key(row)
            if key is None or key not in seen:
                first.append(row)
            if key is not None:
                seen.add(key)
        lookups = {int(r["id"]): Lookup(mappings, r["source"]) for r in first}
        # The orders the run names, asked for together: a new one (every `orders/create` of a
        # sale) is then known absent, where each translation read the store for it.
        named = [order_uuid(k) for r in first if (k := _order_key(r)) is not None]
        ctx = Context(self.ctx.history.knowing(named), self.ctx.db) if named else self.ctx

        def translate(row: dict[str, Any]) -> Translation:
            return self.translate(row, lookups[int(row["id"])], ctx)

        if self.inbox.db.dialect == "postgres" and self.translators > 1 and len(first) > 1:
            # threads for this run only: their reads overlap; none outlives the run
            with ThreadPoolExecutor(min(self.translators, len(first)), "intake-translate") as pool:
                translated = list(pool.map(translate, first))
        else:
            translated = [translate(r) for r in first]
        translations = dict(zip((int(r["id"]) for r in first), translated, strict=True))

        plans: list[Plan] = []
        later: list[dict[str, Any]] = []
        kept_back = set(blocked)
        touched: set[str] = set()
        for row in rows:
            key = _order_key(row)
            if key is not None and key in kept_back | touched:
                if key not in blocked:
                    later.append(row)
                continue
            lookup, translation = lookups[int(row["id"])], translations[int(row["id"])]
            orders = self._orders(translation) | ({key} if key else set())
            if orders & (touched | kept_back):
                # translated against state an earlier message of this run changes: the next run
                kept_back |= orders
                if not orders & blocked:
                    later.append(row)
                continue
            touched |= orders
            plan = Plan(row, translation, lookup)
            if isinstance(translation, Apply):
                for item in translation.items:
                    cause = {
                        "source": row["source"],
                        "reference": str(row["id"]),
                        "correlation_id": str(row["external_id"])[:128],
                        "causation_id": str(row["id"]),
                        "mapping_version": lookup.version,
                        "mappings": [u.as_cause() for u in item.mappings],
                    }
                    plan.futures.append(self.ledger.submit(replace(item.command, cause=cause)))
            plans.append(plan)

        # Wait for every outcome before opening the transaction: the writer may need the same database.
        outcomes: list[list[Any]] = []
        for plan in plans:
            results: list[Any] = []
            for f in plan.futures:
                try:
                    results.append(f.result(timeout=120))
                except Exception as e:
                    results.append(e)
            outcomes.append(results)
        with nullcontext(tx) if tx is not None else self.inbox.db.transaction() as finishing:
            statuses = self._finish(finishing, plans, outcomes)
        for plan in plans:
            if plan.row["id"] in statuses:
                INBOX_MESSAGES.labels(plan.row["source"], statuses[plan.row["id"]].value).inc()
        return statuses, later

    def _finish(self, tx: Tx, plans: list[Plan], outcomes: list[list[Any]]) -> dict[int, Status]:
        """Records each message's outcome, opens or closes its parked exception, wakes what waited."""
        statuses: dict[int, Status] = {}
        wakes: list[WaitKey] = []
        done: list[Finished] = []
        for plan, results in zip(plans, outcomes, strict=True):
            row, t = plan.row, plan.translation
            verdict = self._judge(t, results)
            if verdict.status is Status.RECEIVED:  # the ledger could not store: try again later
                continue
            outcome = self._outcome(t, results)
            done.append(
                Finished(
                    int(row["id"]),
                    verdict.status,
                    verdict.reason,
                    outcome,
                    plan.lookup.uses,
                    verdict.wait_for,
                )
            )
            key = str(row["id"])
            if verdict.status is Status.PARKED:
                open_exception(
                    tx,
                    "parked-message",
                    key,
                    {
                        "source": row["source"],
                        "external_id": row["external_id"],
                        "reason": verdict.reason,
                    },
                )
            elif verdict.status is not Status.WAITING and row.get("attempts", 1):
                # a message never finished before (attempts 0) was never parked: nothing to close
                close_exception(tx, "parked-message", key, {"resolved": verdict.status.value})
            if verdict.status in (Status.APPLIED, Status.DUPLICATE):
                if isinstance(t, Apply):
                    if t.after is not None:
                        t.after(tx, results)
                    wakes += t.wakes
                elif isinstance(t, Duplicate):
                    wakes += t.wakes
            statuses[row["id"]] = verdict.status
        self.inbox.finish(tx, done)
        self.inbox.wake(tx, wakes)  # last: a message of this run may have just started waiting
        return statuses

    @staticmethod
    def _orders(t: Translation) -> set[str]:
        """The orders a translation read or acts on."""
        if isinstance(t, Wait):
            return {t.key.value} if t.key.kind == "order" else set()
        if isinstance(t, Duplicate):
            return {w.value for w in t.wakes if w.kind == "order"}
        if not isinstance(t, Apply):
            return set()
        found = {str(i.command.order_id) for i in t.items if hasattr(i.command, "order_id")}
        return found | {w.value for w in t.wakes if w.kind == "order"}

    @staticmethod
    def _judge(t: Translation, results: list[Any]) -> Verdict:
        if isinstance(t, Reject):
            return Verdict(Status.REJECTED, t.reason)
        if isinstance(t, Park):
            return Verdict(Status.PARKED, t.reason)
        if isinstance(t, Wait):
            return Verdict(Status.WAITING, f"waiting for {t.key}", t.key)
        if isinstance(t, Duplicate):
            return Verdict(Status.DUPLICATE, "every command was already recorded")
        errors = [r for r in results if isinstance(r, BaseException)]
        # Not stored, or not known yet (no answer within the wait: the writer may still store it
        # later): the message stays received and is tried again; its commands are keyed, so a
        # command that did get stored meanwhile comes back as a duplicate.
        if any(isinstance(e, StorageError | VersionConflictError | TimeoutError) for e in errors):
            return Verdict(Status.RECEIVED)
        for e in errors:
            if isinstance(e, OrderNotFoundError):
                key = WaitKey.order(str(e.details.get("order_id", "")))
                return Verdict(Status.WAITING, f"waiting for {key}", key)
        if errors:
            reason = "; ".join(_error(e) for e in errors)
            ok = len(results) - len(errors)
            if not ok:
                return Verdict(Status.REJECTED, reason)
            return Verdict(
                Status.APPLIED, f"{len(errors)} of {len(results)} commands refused: {reason}"[:1000]
            )
        if results and all(isinstance(r, dict) and r.get("duplicate") for r in results):
            return Verdict(Status.DUPLICATE, "every command was already recorded")
        notes = list(t.notes)
        for r in results:
            if isinstance(r, dict) and r.get("shortfall"):
                notes.append(
                    f"{r.get('sku')} at {r.get('location')}: counted {r['shortfall']} below reserved "
                    "and unavailable"
                )
        return Verdict(Status.APPLIED, "; ".join(notes)[:1000] or None)

    @staticmethod
    def _outcome(t: Translation, results: list[Any]) -> dict[str, Any]:
        if not isinstance(t, Apply):
            return {}
        streams = sorted({s for item in t.items for s in item.streams})
        return {
            "commands": [
                {
                    "type": type(item.command).__name__,
                    "result": "refused"
                    if isinstance(r, BaseException)
                    else ("duplicate" if r.get("duplicate") else "ok"),
                    **({"error": _error(r)} if isinstance(r, BaseException) else {}),
                    **({k: r[k] for k in ("delta", "shortfall") if k in r} if isinstance(r, dict) else {}),
                }
                for item, r in zip(t.items, results, strict=False)
            ],
            "streams": [list(s) for s in streams],
            "notes": t.notes,
        }

    def sweep_waiting(self) -> int:
        """Requeues messages waiting for an order that is now in the ledger by another path."""
        ids = []
        for row in self.inbox.list(status=Status.WAITING, limit=1000):
            key = WaitKey.parse(row.get("wait_for"))
            if key is not None and key.kind == "order" and self.ledger.history.order(key.value) is not None:
                ids.append(int(row["id"]))
        return self.inbox.requeue(ids, (Status.WAITING,))


class InboxWorker(Loop):
    """Applies received messages in the background; re-checks waiting ones now and then."""

    def __init__(self, intake: Intake, poll: float = 0.2, sweep_every: int = 25) -> None:
        self.intake = intake
        self._idle = 0
        self.sweep_every = sweep_every
        super().__init__("inbox-worker", self._step, poll)

    def _step(self) -> int:
        n = self.intake.step()
        if not n:
            self._idle += 1
            if self._idle % self.sweep_every == 0:
                n = self.intake.sweep_waiting()
        return n


class Remapper:
    def __init__(self, intake: Intake, keys: Any = None) -> None:
        self.intake = intake
        self.keys = keys

    def remap(self, source: str, kind: str, external_id: str, actor: str = "cli") -> dict[str, Any]:
        key = mapping_key(source, kind, external_id)
        current = self.intake.mappings.get(source, kind, external_id)
        canonical = (
            current[0] if current else (external_id if source == "erp" and kind != "channel" else None)
        )
        version = current[1] if current else 0
        rows = self.intake.inbox.using(key)
        corrections: list[tuple[int, c.CorrectMovement]] = []
        if canonical is not None and kind in ("sku", "location"):
            for row in rows:
                if row["status"] in ("applied", "duplicate"):
                    corrections += [
                        (int(row["id"]), cmd) for cmd in self._corrections(row, key, kind, canonical, version)
                    ]
        lines: list[tuple[int, c.RemapOrderLine]] = []
        if canonical is not None and source == "shopify" and kind == "sku":
            lines = self._order_lines(rows, key, external_id, canonical, version)
        futures = [(inbox_id, self.intake.ledger.submit(cmd)) for inbox_id, cmd in corrections]
        line_futures = [(inbox_id, cmd, self.intake.ledger.submit(cmd)) for inbox_id, cmd in lines]
        corrected_msgs: set[int] = set()
        movements, failures = 0, []
        for inbox_id, f in futures:
            try:
                result = f.result(timeout=120)
            except Exception as e:
                failures.append({"inbox_id": inbox_id, "error": _error(e)})
                continue
            if not result.get("duplicate"):
                movements += 1
                corrected_msgs.add(inbox_id)
        orders: set[str] = set()
        remapped = unreserved = 0
        for inbox_id, cmd, f in line_futures:
            try:
                result = f.result(timeout=120)
            except Exception as e:
                failures.append(
                    {
                        "inbox_id": inbox_id,
                        "order_id": cmd.order_id,
                        "line_id": cmd.line_id,
                        "error": _error(e),
                    }
                )
                continue
            if result.get("remapped") and not result.get("duplicate"):
                remapped += 1
                unreserved += not result.get("reserved")
                orders.add(cmd.order_id)
                corrected_msgs.add(inbox_id)
        parked = [int(r["id"]) for r in rows if r["status"] == "parked"]
        applied_parked = 0
        if parked:
            self.intake.inbox.requeue(parked, (Status.PARKED,))
            with self.intake.inbox.claim(limit=len(parked), ids=parked) as claim:
                statuses = self.intake.apply(claim.rows, claim.tx)
            self.intake.inbox.refresh_metrics()
            applied_parked = sum(1 for s in statuses.values() if s in ("applied", "duplicate"))
        answer = {
            "mapping": key,
            "canonical": canonical,
            "version": version,
            "messages": len(corrected_msgs) + applied_parked,
            "movements": movements,
            "orders": len(orders),
            "order_lines": remapped,
            "order_lines_unreserved": unreserved,
            "parked_applied": applied_parked,
            "examined": len(rows),
            "failures": failures,
        }
        if self.keys is not None:
            self.keys.audit(actor, "mapping.remap", key, {k: v for k, v in answer.items() if k != "failures"})
        return answer

    def _order_lines(
        self, rows: list[dict[str, Any]], key: str, variant: str, canonical: str, version: int
    ) -> list[tuple[int, c.RemapOrderLine]]:
        """The lines of Shopify orders captured through this variant mapping that now maps elsewhere."""
        out: list[tuple[int, c.RemapOrderLine]] = []
        seen: set[tuple[str, str]] = set()
        for row in rows:
            if row["kind"] != "orders/create" or row["status"] not in ("applied", "duplicate"):
                continue
            try:
                p = shopify.parse("orders/create", orjson.loads(self.intake.inbox.body(int(row["id"]))))
            except (ValueError, ValidationError):
                continue
            order = self.intake.ledger.history.order(str(p.id))  # type: ignore[attr-defined]  # an orders/create
            if order is None:
                continue
            for li in p.line_items:  # type: ignore[attr-defined]  # an orders/create payload
                line = order.lines.get(str(li.id))
                if str(li.variant_id) != variant or line is None or line["sku"] == canonical:
                    continue
                if (order.order_id, line["line_id"]) in seen:
                    continue
                seen.add((order.order_id, line["line_id"]))
                out.append(
                    (
                        int(row["id"]),
                        c.RemapOrderLine(
                            order_id=order.order_id,
                            line_id=line["line_id"],
                            sku=canonical,
                            mapping={"key": key, "version": version},
                            reference=ref("remap", key, version, order.order_id, line["line_id"]),
                            cause=_remap_cause(row, key, version, canonical),
                        ),
                    )
                )
        return out

    def _corrections(
        self, row: dict[str, Any], key: str, kind: str, canonical: str, version: int
    ) -> list[c.CorrectMovement]:
        history = self.intake.ledger.history
        out = []
        for sku, location in (row.get("outcome") or {}).get("streams", []):
            wrong_coordinate = sku if kind == "sku" else location
            if wrong_coordinate == canonical:
                continue
            stream: SkuLocation | None = history.stock(sku, location)
            if stream is None:
                continue
            after = None
            while True:
                page = list(history.events(stock_id(sku, location), after=after, limit=500))
                for _, event in page:
                    cause = getattr(event, "cause", None) or {}
                    if cause.get("causation_id") != str(row["id"]) or not _chose(
                        cause, key, kind, sku, location
                    ):
                        continue
                    if isinstance(event, SkuLocation.MovementCorrected) or movement_effect(event) == (0, 0):
                        continue
                    if str(event.originator_version) in stream.corrected:
                        continue
                    target = {"to_sku": canonical} if kind == "sku" else {"to_location": canonical}
                    out.append(
                        c.CorrectMovement(
                            sku=sku,
                            location=location,
                            version=event.originator_version,
                            reason="remap",
                            reference=ref("remap", row["id"], sku, location, event.originator_version),
                            cause=_remap_cause(row, key, version, canonical),
                            **target,
                        )
                    )
                if len(page) < 500:
                    break
                after = page[-1][0]
        return out


def _payload(row: dict[str, Any]) -> Any:
    """The message's parsed body (cached on the row), or None when it is not JSON."""
    if "payload" not in row:
        try:
            row["payload"] = orjson.loads(row["body"]) if "body" in row else None
        except ValueError:
            row["payload"] = None
    return row["payload"]


def _order_key(row: dict[str, Any]) -> str | None:
    """The order a message is about, read from its body before translating (Shopify only)."""
    if row["source"] != "shopify":
        return None
    return shopify.order_of(str(row["kind"]), _payload(row))


def _remap_cause(row: dict[str, Any], key: str, version: int, canonical: str) -> dict[str, Any]:
    """The cause of a command a remap issues for an inbox message: names the message and the mapping fix."""
    return {
        "source": "remap",
        "reference": str(row["id"]),
        "correlation_id": key[:128],
        "causation_id": str(row["id"]),
        "mapping_version": version,
        "mappings": [MappingUse(*_split(key), version, canonical).as_cause()],
    }


def _split(key: str) -> tuple[str, str, str]:
    source, _, rest = key.partition("/")
    kind, _, external_id = rest.partition("/")
    return source, kind, external_id


def _chose(cause: dict[str, Any], key: str, kind: str, sku: str, location: str) -> bool:
    """Whether the mapping `key` chose this stream's coordinate for the event's command (its leg).

    A transfer's command names both locations' mappings; only the leg whose value is this stream's
    location moved it. A use recorded without its value (older events) counts for every stream.
    """
    coordinate = sku if kind == "sku" else location
    return any(
        u.key == key and u.kind == kind and (u.value is None or u.value == coordinate)
        for u in uses_in_cause(cause)
    )
