"""docker-compose.yml and the Dockerfile (Docker does not run here, so they are read, not run)."""

from __future__ import annotations

from pathlib import Path

import typer.main
import yaml

import ledger
from cli.main import app as cli

ROOT = Path(ledger.__file__).parent.parent


def compose() -> dict:
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())


def test_compose_runs_postgres_nats_with_jetstream_the_service_and_the_worker():
    services = compose()["services"]
    assert {"postgres", "nats", "ledger", "worker"} <= set(services)
    profiled = {name for name, svc in services.items() if "profiles" in svc}
    assert set(services) - profiled == {"postgres", "nats", "ledger", "worker"}
    assert services["postgres"]["image"].startswith("postgres:")
    nats = services["nats"]
    assert "-js" in nats["command"] and "8222" in nats["command"]


def test_every_backing_service_has_a_healthcheck_and_the_ledger_waits_for_it():
    services = compose()["services"]
    assert "pg_isready" in " ".join(services["postgres"]["healthcheck"]["test"])
    assert "/healthz" in " ".join(services["nats"]["healthcheck"]["test"])
    for name in ("ledger", "worker"):
        assert services[name]["depends_on"] == {
            "postgres": {"condition": "service_healthy"},
            "nats": {"condition": "service_healthy"},
        }
    assert "/readyz" in " ".join(services["ledger"]["healthcheck"]["test"])


def test_the_ledger_is_configured_through_the_contract_variables():
    services = compose()["services"]
    for name in ("ledger", "worker"):
        env = services[name]["environment"]
        assert (
            env["LEDGER_DATABASE_URL"].startswith("postgresql://")
            and "@postgres:5432/" in env["LEDGER_DATABASE_URL"]
        )
        assert env["LEDGER_NATS_URL"] == "nats://nats:4222"
    assert services["ledger"]["command"][:4] == ["ledger", "serve", "--host", "0.0.0.0"]
    assert services["worker"]["command"][:2] == ["ledger", "worker"]
    assert "--metrics-port" in services["worker"]["command"]  # Prometheus scrapes the worker's lag too
    assert services["ledger"]["ports"] == ["${LEDGER_BIND:-127.0.0.1}:8000:8000"]


def test_every_published_port_is_bound_to_loopback_by_default():
    for name, svc in compose()["services"].items():
        for port in svc.get("ports", []):
            assert port.startswith(("127.0.0.1:", "${LEDGER_BIND:-127.0.0.1}:")), (name, port)


def test_the_observability_profile_brings_prometheus_and_grafana_provisioned_with_the_repo_files():
    services = compose()["services"]
    for name in ("prometheus", "grafana"):
        assert services[name]["profiles"] == ["observability"]
    mounts = " ".join(services["prometheus"]["volumes"] + services["grafana"]["volumes"])
    for path in ("ops/prometheus/alerts.yml", "ops/prometheus/prometheus.yml", "ops/grafana/dashboards",
                 "ops/grafana/provisioning"):
        assert "./" + path in mounts
        assert (ROOT / path).exists()


def test_the_service_command_exists_in_the_cli():
    commands = typer.main.get_command(cli).commands  # type: ignore[attr-defined]  # a click Group
    assert "serve" in commands


def test_the_http_service_leaves_the_workers_to_the_worker_service():
    services = compose()["services"]
    assert "--no-workers" in services["ledger"]["command"]
    serve = typer.main.get_command(cli).commands["serve"]  # type: ignore[attr-defined]  # a click Group
    flags = {o for p in serve.params for o in (*p.opts, *getattr(p, "secondary_opts", ()))}
    assert {"--host", "--port", "--no-workers"} <= flags
    assert "worker" in typer.main.get_command(cli).commands  # type: ignore[attr-defined]  # a click Group


def test_the_image_installs_the_project_on_python_311_slim():
    lines = [
        x.strip()
        for x in (ROOT / "Dockerfile").read_text().splitlines()
        if x.strip() and not x.startswith("#")
    ]
    assert lines[0] == "FROM python:3.11-slim"
    assert any(x.startswith("RUN pip install") and "-c requirements.lock" in x for x in lines)
    healthcheck = (ROOT / "Dockerfile").read_text().replace("\\\n", " ").split("HEALTHCHECK", 1)
    assert len(healthcheck) == 2 and "/readyz" in healthcheck[1].splitlines()[0]
    copied = {x.split()[1] for x in lines if x.startswith("COPY")}
    packages = {"ledger", "adapters", "projections", "bootstrap", "api", "cli"}
    assert packages <= copied and "pyproject.toml" in copied
    ignored = (ROOT / ".dockerignore").read_text().split()
    assert ".venv" in ignored and ".git" in ignored and not packages & set(ignored)
