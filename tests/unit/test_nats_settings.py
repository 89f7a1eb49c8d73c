"""`LEDGER_NATS_URL` as a server list and `LEDGER_NATS_STREAM_REPLICAS`, checked at start."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from adapters.config import Settings
from adapters.nats import describe, redact, server_list


def test_a_comma_separated_list_is_kept_in_order_without_blanks():
    s = Settings(nats_url=" nats://a:4222, ,tls://b:4223 ")
    assert s.nats_url == "nats://a:4222,tls://b:4223"
    assert server_list(s.nats_url) == ["nats://a:4222", "tls://b:4223"]
    assert Settings(nats_url="").nats_url is None and server_list(None) == []


@pytest.mark.parametrize("bad", ["http://a:4222", "nats://a:4222,a:4223", "localhost:4222"])
def test_a_server_that_is_not_a_nats_url_fails_the_start_naming_the_variable(bad):
    with pytest.raises(ValidationError, match="LEDGER_NATS_URL"):
        Settings(nats_url=bad)


def test_stream_replicas_default_to_one_and_are_bounded_by_jetstream():
    assert Settings().nats_stream_replicas == 1
    assert Settings(nats_stream_replicas=3).nats_stream_replicas == 3
    for bad in (0, 6):
        with pytest.raises(ValidationError, match="nats_stream_replicas"):
            Settings(nats_stream_replicas=bad)


def test_log_lines_name_servers_without_their_credentials():
    assert redact("nats://user:secret@h1:4222") == "nats://h1:4222"
    assert redact("nats://h2:4222") == "nats://h2:4222"
    assert describe(ConnectionRefusedError(111, "Connect call failed")) == (
        "ConnectionRefusedError: [Errno 111] Connect call failed"
    )
