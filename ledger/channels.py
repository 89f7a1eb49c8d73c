"""Facts about the read side that belong in the log: channel policy changes and read-model rebuilds.

A channel's policy (its locations, safety stock, buffer, exclusions) is kept as versioned rows
by the adapter that validates it; each new version is also recorded here as `PolicyChanged`, so
the `ats` read model applies it at a position of the log, like any other fact, and a consumer
sees the corrected values with a position newer than anything published before them.

A `ReadModel` stream records `Rebuilt` after a rebuild swapped its tables in: the values the
rebuild corrected are published at that marker's position.
"""

from __future__ import annotations

import uuid
from typing import Any

from eventsourcing.domain import Aggregate

from ledger.bounds import NAMESPACE, check_id

Cause = dict[str, Any]


def channel_id(channel: str) -> uuid.UUID:
    return uuid.uuid5(NAMESPACE, f"channel\x1f{channel}")


def read_model_id(name: str) -> uuid.UUID:
    return uuid.uuid5(NAMESPACE, f"read-model\x1f{name}")


class Channel(Aggregate):
    """A sales channel, as far as the log knows it: the newest policy version recorded."""

    @staticmethod
    def create_id(channel: str, **_: Any) -> uuid.UUID:
        return channel_id(channel)

    class Event(Aggregate.Event):
        cause: Cause

    class Opened(Aggregate.Created):
        channel: str
        cause: Cause

    def __init__(self, channel: str, cause: Cause) -> None:
        self.channel = channel
        self.policy_version = 0
        self.policy: dict[str, Any] = {}

    @classmethod
    def open(cls, channel: str, cause: Cause) -> Channel:
        check_id(channel, "channel")
        return cls._create(cls.Opened, id=cls.create_id(channel), channel=channel, cause=cause)

    class PolicyChanged(Event):
        channel: str
        version: int
        policy: dict[str, Any]
        changed_by: str

        def apply(self, ch: Channel) -> None:
            ch.policy_version = self.version
            ch.policy = dict(self.policy)

    def change_policy(self, version: int, policy: dict[str, Any], changed_by: str, cause: Cause) -> bool:
        """Records a newer policy version; an older or repeated version changes nothing."""
        if version <= self.policy_version:
            return False
        self.trigger_event(
            self.PolicyChanged,
            channel=self.channel,
            version=version,
            policy=policy,
            changed_by=changed_by,
            cause=cause,
        )
        return True


class ReadModel(Aggregate):
    """A read model's stream of rebuild markers."""

    @staticmethod
    def create_id(name: str, **_: Any) -> uuid.UUID:
        return read_model_id(name)

    class Event(Aggregate.Event):
        cause: Cause

    class Opened(Aggregate.Created):
        name: str
        cause: Cause

    def __init__(self, name: str, cause: Cause) -> None:
        self.name = name
        self.rebuilds = 0

    @classmethod
    def open(cls, name: str, cause: Cause) -> ReadModel:
        check_id(name, "name")
        return cls._create(cls.Opened, id=cls.create_id(name), name=name, cause=cause)

    class Rebuilt(Event):
        name: str
        position: int  # the log position the rebuilt tables reached at the swap
        corrected: int  # how many published values the rebuild corrected
        by: str

        def apply(self, rm: ReadModel) -> None:
            rm.rebuilds += 1

    def record_rebuild(self, position: int, corrected: int, by: str, cause: Cause) -> None:
        self.trigger_event(
            self.Rebuilt, name=self.name, position=position, corrected=corrected, by=by, cause=cause
        )
