"""docker-compose.yml describes the production stack completely."""

from pathlib import Path

import yaml

COMPOSE = Path(__file__).resolve().parents[2] / "docker-compose.yml"


def _services() -> dict:
    return yaml.safe_load(COMPOSE.read_text())["services"]


def test_compose_parses_and_every_service_has_a_command():
    services = _services()
    assert {"db", "redis", "web", "worker-cpu", "worker-gpu"} <= set(services)
    for name, service in services.items():
        assert service.get("command"), f"service {name} has no command"


def test_services_that_others_wait_on_have_health_checks():
    services = _services()
    for name in ("db", "redis", "web", "worker-cpu", "worker-gpu"):
        assert services[name].get("healthcheck", {}).get("test"), name


def test_workers_consume_their_queue_one_task_at_a_time():
    services = _services()
    for name, queue in (("worker-cpu", "cpu"), ("worker-gpu", "gpu")):
        cmd = services[name]["command"]
        assert cmd[cmd.index("-Q") + 1] == queue
        assert cmd[cmd.index("--concurrency") + 1] == "1"
        assert cmd[cmd.index("--prefetch-multiplier") + 1] == "1"
    gpu = services["worker-gpu"]["deploy"]["resources"]["reservations"]["devices"][0]
    assert gpu["driver"] == "nvidia" and "gpu" in gpu["capabilities"]


def test_production_settings_come_from_the_environment_not_the_file():
    text = COMPOSE.read_text()
    assert "POSTGRES_PASSWORD:?" in text  # refuses to start without a password from .env
    assert "SECRET_KEY" not in text


def test_gunicorn_is_published_on_the_host_loopback_only_behind_the_proxy():
    web = _services()["web"]
    assert web["ports"] and all(str(p).startswith("127.0.0.1:") for p in web["ports"])
    env = yaml.safe_load(COMPOSE.read_text())["x-app"]["environment"]
    assert env["SCANBENCH_BEHIND_PROXY"].endswith(":-true}")
    allowed = env["FORWARDED_ALLOW_IPS"]
    assert "*" not in allowed and "127.0.0.1" in allowed


def test_health_check_calls_healthz_over_plain_http():
    test = " ".join(_services()["web"]["healthcheck"]["test"])
    assert "http://127.0.0.1:8000/healthz" in test


def test_throttle_counters_are_shared_by_every_web_worker():
    env = yaml.safe_load(COMPOSE.read_text())["x-app"]["environment"]
    assert env["SCANBENCH_CACHE_URL"].startswith("redis://redis:6379/")
    assert env["SCANBENCH_CACHE_URL"] != env["CELERY_BROKER_URL"]
