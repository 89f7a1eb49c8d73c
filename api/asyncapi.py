"""`GET /asyncapi.json`: the NATS subjects the ledger publishes, as an AsyncAPI 3 document.

The payload schemas are the ones the projections emit (`projections/models.py` `ats_message`,
`stage_message`; `projections/exceptions.py`); `tests/integration/test_asyncapi.py` validates real
messages read from JetStream against them.
"""

from __future__ import annotations

from typing import Any

import orjson
from fastapi import APIRouter
from fastapi.responses import Response

from ledger.orders import STAGES

router = APIRouter(tags=["health"])

POSITION = {
    "type": "integer",
    "minimum": 1,
    "description": "The ledger position of the fact behind this value. A consumer drops any message whose "
    "position is not newer than the last one it applied for the same subject.",
}
TOKEN = (
    "Subject tokens: ASCII letters, digits, `-` and `_` as they are; every other character as its UTF-8 "
    "bytes written `~HH` (`.` → `~2E`, `~` → `~7E`), so a value is always exactly one token."
)
HEADERS = {
    "type": "object",
    "properties": {
        "Nats-Msg-Id": {
            "type": "string",
            "description": "Unique per message; JetStream drops a re-send within its 30-minute duplicate window.",
        }
    },
    "required": ["Nats-Msg-Id"],
}

SCHEMAS: dict[str, dict[str, Any]] = {
    "AtsChanged": {
        "type": "object",
        "description": "The available-to-sell of a SKU on a sales channel changed.",
        "properties": {
            "channel": {"type": "string", "minLength": 1, "maxLength": 128},
            "sku": {"type": "string", "minLength": 1, "maxLength": 128},
            "available": {"type": "integer", "minimum": 0, "description": "Units the channel may sell now."},
            "position": POSITION,
        },
        "required": ["channel", "sku", "available", "position"],
        "additionalProperties": False,
        "examples": [{"channel": "online", "sku": "TSHIRT-RED-M", "available": 7, "position": 1042}],
    },
    "OrderStageChanged": {
        "type": "object",
        "description": "An order's business stage changed (derived from the ledger's facts, never Shopify's statuses).",
        "properties": {
            "order_id": {"type": "string", "minLength": 1, "maxLength": 128},
            "channel": {"type": "string"},
            "stage": {"type": "string", "enum": list(STAGES)},
            "position": POSITION,
        },
        "required": ["order_id", "channel", "stage", "position"],
        "additionalProperties": True,
        "examples": [{"order_id": "1001", "channel": "online", "stage": "reserved", "position": 1043}],
    },
    "ExceptionChanged": {
        "type": "object",
        "description": (
            "An operator exception opened or closed (drift, stuck-order, shortfall, negative-stock, ...)."
        ),
        "properties": {
            "kind": {"type": "string"},
            "key": {"type": "string", "description": "What the exception is about, unique within its kind."},
            "status": {"type": "string", "enum": ["open", "closed"]},
            "detail": {"type": "object", "description": "Kind-specific facts; never personal data."},
            "position": {
                "type": "integer",
                "minimum": 1,
                "description": "The exceptions' clock: each open or close takes the next number, never below "
                "`ledger_position`, in commit order (shared by every kind). Many exceptions have no ledger fact "
                "behind them (a parked message, a POS gap, a count found wrong again at an unchanged ledger "
                "position), so this is not a ledger position; but, as for every subject, a consumer drops any "
                "message whose position is not newer than the last one it applied for the same exception.",
            },
            "ledger_position": {
                "type": ["integer", "null"],
                "minimum": 1,
                "description": "The ledger position of the fact that raised or resolved it (the reconciliation's "
                "read of the ledger for drift); null when no ledger fact is behind the change.",
            },
        },
        "required": ["kind", "key", "status", "detail", "position", "ledger_position"],
        "additionalProperties": False,
        "examples": [
            {
                "kind": "drift",
                "key": "erp/TSHIRT-RED-M/WH1",
                "status": "open",
                "detail": {"source": "erp", "sku": "TSHIRT-RED-M", "location": "WH1", "delta": -2},
                "position": 1044,
                "ledger_position": 1043,
            }
        ],
    },
}

CHANNELS = {
    "ats": ("ledger.ats.{channel}.{sku}", ["channel", "sku"], "AtsChanged"),
    "orders": ("ledger.orders.{order_id}", ["order_id"], "OrderStageChanged"),
    "exceptions": ("ledger.exceptions.{kind}", ["kind"], "ExceptionChanged"),
}


def document(version: str = "0.1.0") -> dict[str, Any]:
    """The AsyncAPI 3.0 document (pure: the same every call)."""
    channels: dict[str, Any] = {}
    operations: dict[str, Any] = {}
    messages: dict[str, Any] = {}
    for name, (address, params, message) in CHANNELS.items():
        channels[name] = {
            "address": address,
            "description": f"JetStream stream `LEDGER` (subjects `ledger.>`). {TOKEN}",
            "parameters": {p: {"description": f"The {p}, as one subject token."} for p in params},
            "messages": {message: {"$ref": f"#/components/messages/{message}"}},
        }
        operations[f"receive{message}"] = {
            "action": "receive",
            "channel": {"$ref": f"#/channels/{name}"},
            "summary": "Published in ledger order: per subject, positions only grow.",
            "messages": [{"$ref": f"#/channels/{name}/messages/{message}"}],
        }
        messages[message] = {
            "name": message,
            "contentType": "application/json",
            "headers": HEADERS,
            "payload": {"$ref": f"#/components/schemas/{message}"},
        }
    return {
        "asyncapi": "3.0.0",
        "info": {
            "title": "ledger NATS messages",
            "version": version,
            "description": "Read-model changes published on NATS JetStream, stream `LEDGER`, from the transactional "
            "outbox: at least once, de-duplicated by `Nats-Msg-Id`; ordered per subject by `position`.",
        },
        "defaultContentType": "application/json",
        "servers": {
            "nats": {"host": "127.0.0.1:4222", "protocol": "nats", "description": "LEDGER_NATS_URL"},
        },
        "channels": channels,
        "operations": operations,
        "components": {"schemas": SCHEMAS, "messages": messages},
    }


_DOCUMENT = document()


@router.get("/asyncapi.json", include_in_schema=False)
async def asyncapi() -> Response:
    """The AsyncAPI 3 description of the NATS subjects."""
    return Response(orjson.dumps(_DOCUMENT), media_type="application/json")


def schema_for(subject: str) -> dict[str, Any] | None:
    """The payload schema of a published subject, by its prefix."""
    for address, _, message in CHANNELS.values():
        if subject.startswith(address.split("{", 1)[0]):
            return SCHEMAS[message]
    return None
