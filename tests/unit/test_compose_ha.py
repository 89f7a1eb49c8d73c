"""docker-compose.ha.yml: pg_auto_failover (monitor, primary, standby), a three-node JetStream cluster,
two API processes and two workers. Docker does not run here, so the file is read and checked."""

from __future__ import annotations

from pathlib import Path

import yaml
from psycopg.conninfo import conninfo_to_dict

import ledger
from adapters.config import Settings
from adapters.nats import server_list

ROOT = Path(ledger.__file__).parent.parent
BACKING = {"pg-1", "pg-2", "nats-1", "nats-2", "nats-3"}
LEDGER = {"api-1", "api-2", "worker-1", "worker-2"}


def services() -> dict:
    return yaml.safe_load((ROOT / "docker-compose.ha.yml").read_text())["services"]


def flags(command: list[str]) -> dict[str, str]:
    return dict(a[2:].split("=", 1) for a in command if a.startswith("--") and "=" in a)


def test_the_topology_is_a_monitor_two_postgres_nodes_three_nats_nodes_two_apis_two_workers():
    assert set(services()) == {"pg-monitor"} | BACKING | LEDGER


def test_postgres_is_pg_auto_failover_from_debian_with_a_monitor_and_two_nodes_of_one_formation():
    s = services()
    for name in ("pg-monitor", "pg-1", "pg-2"):
        build = s[name]["build"]["dockerfile_inline"]
        assert "FROM postgres:15" in build and "postgresql-15-auto-failover" in build
        assert s[name]["user"] == "postgres"
        assert s[name]["command"][0] == "pg_autoctl" and "--run" in s[name]["command"]
    assert s["pg-monitor"]["command"][1:3] == ["create", "monitor"]
    for name in ("pg-1", "pg-2"):
        cmd = s[name]["command"]
        assert cmd[1:3] == ["create", "postgres"]
        f = flags(cmd)
        assert f["hostname"] == f["name"] == name  # reachable by its service name
        assert conninfo_to_dict(f["monitor"])["host"] == "pg-monitor"
        assert f["dbname"] == "ledger" and f["username"] == "ledger"
        assert "--pg-hba-lan" in cmd  # the API processes and workers may connect
    # The standby registers after the primary is up, so the first node starts as the primary.
    assert s["pg-2"]["depends_on"] == {"pg-1": {"condition": "service_healthy"}}
    assert s["pg-1"]["depends_on"] == {"pg-monitor": {"condition": "service_healthy"}}


def test_nats_is_a_three_node_jetstream_cluster_each_routed_to_the_other_two():
    s = services()
    names = {"nats-1", "nats-2", "nats-3"}
    for name in names:
        cmd = s[name]["command"]
        assert "-js" in cmd and cmd[cmd.index("-n") + 1] == name
        assert cmd[cmd.index("--cluster_name") + 1] == "ledger"
        routes = {r.removeprefix("nats://").split(":")[0] for r in cmd[cmd.index("--routes") + 1].split(",")}
        assert routes == names - {name}
        assert "/healthz" in " ".join(s[name]["healthcheck"]["test"])


def test_every_ledger_process_gets_the_failover_uri_the_server_list_and_three_replicas():
    s = services()
    for name in LEDGER:
        env = s[name]["environment"]
        settings = Settings(
            database_url=env["LEDGER_DATABASE_URL"],
            nats_url=env["LEDGER_NATS_URL"],
            nats_stream_replicas=env["LEDGER_NATS_STREAM_REPLICAS"],
        )
        pg = conninfo_to_dict(settings.database_url)
        assert pg["host"] == "pg-1,pg-2" and pg["target_session_attrs"] == "read-write"
        assert pg["dbname"] == "ledger" and pg["user"] == "ledger"
        assert server_list(settings.nats_url) == [f"nats://nats-{i}:4222" for i in (1, 2, 3)]
        assert settings.nats_stream_replicas == 3
        assert s[name]["depends_on"] == {b: {"condition": "service_healthy"} for b in BACKING}


def test_two_api_processes_leave_the_workers_to_two_worker_processes():
    s = services()
    for name in ("api-1", "api-2"):
        assert s[name]["command"][:2] == ["ledger", "serve"] and "--no-workers" in s[name]["command"]
        assert "/readyz" in " ".join(s[name]["healthcheck"]["test"])
    assert {p for n in ("api-1", "api-2") for p in s[n]["ports"]} == {"8000:8000", "8001:8000"}
    for name in ("worker-1", "worker-2"):
        assert s[name]["command"] == ["ledger", "worker"]


def test_every_stateful_service_keeps_its_data_in_a_volume_of_its_own():
    s = services()
    volumes = [s[n]["volumes"][0].split(":")[0] for n in ("pg-monitor", *sorted(BACKING))]
    assert len(volumes) == len(set(volumes)) == 6
    for name in ("pg-monitor", "pg-1", "pg-2"):
        assert "pg_isready" in " ".join(s[name]["healthcheck"]["test"])
