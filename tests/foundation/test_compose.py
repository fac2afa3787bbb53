"""docker-compose.yml describes the production stack completely (tests/production starts it)."""

from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = ROOT / "docker-compose.yml"
APP_SERVICES = ("web", "worker-cpu", "worker-gpu", "beat")


def _compose(name: str = "docker-compose.yml") -> dict:
    return yaml.safe_load((ROOT / name).read_text())


def _services() -> dict:
    return _compose()["services"]


def test_compose_parses_and_every_app_service_has_a_command():
    services = _services()
    assert {"db", "redis", "web", "proxy", "worker-cpu", "worker-gpu", "beat"} <= set(services)
    for name in APP_SERVICES:
        assert services[name].get("command"), f"service {name} has no command"


def test_services_that_others_wait_on_have_health_checks():
    services = _services()
    for name in ("db", "redis", "web", "worker-cpu", "worker-gpu"):
        assert services[name].get("healthcheck", {}).get("test"), name
    # The proxy's own check is in its image (platform/images/proxy/Dockerfile).
    assert "HEALTHCHECK" in (ROOT / "platform/images/proxy/Dockerfile").read_text()


def test_workers_consume_their_queue_one_task_at_a_time():
    services = _services()
    for name, queue in (("worker-cpu", "cpu"), ("worker-gpu", "gpu")):
        cmd = services[name]["command"]
        assert cmd[cmd.index("-Q") + 1] == queue
        assert cmd[cmd.index("--concurrency") + 1] == "1"
        assert cmd[cmd.index("--prefetch-multiplier") + 1] == "1"


def test_only_the_gpu_worker_holds_the_engine_socket():
    services = _services()
    for name, service in services.items():
        mounts = " ".join(str(v) for v in service.get("volumes", []))
        assert ("docker.sock" in mounts) == (name == "worker-gpu"), name
    gpu = _compose("docker-compose.gpu.yml")["services"]["worker-gpu"]["environment"]
    assert gpu["SCANBENCH_SANDBOX_BACKEND"] == "docker"
    assert "SCANBENCH_EVALUATOR_IMAGE" in gpu


def test_production_settings_come_from_the_environment_not_the_file():
    text = COMPOSE.read_text()
    assert "POSTGRES_PASSWORD:?" in text  # refuses to start without a password from .env
    assert "SECRET_KEY" not in text


def test_only_the_proxy_is_published_and_it_never_sees_the_private_root():
    services = _services()
    published = {name for name, service in services.items() if service.get("ports")}
    assert published == {"proxy"}
    proxy_mounts = " ".join(services["proxy"]["volumes"])
    assert "private" not in proxy_mounts and "docker.sock" not in proxy_mounts
    assert "front" in services["web"]["networks"] and services["proxy"]["networks"] == ["front"]
    for name in ("db", "redis", "worker-cpu", "worker-gpu", "beat"):
        assert "front" not in services[name].get("networks", ["back"]), name
    env = _compose()["x-app"]["environment"]
    assert env["SCANBENCH_BEHIND_PROXY"] == "true"


def test_health_check_calls_readyz_over_plain_http():
    test = " ".join(_services()["web"]["healthcheck"]["test"])
    assert "http://127.0.0.1:8000/readyz" in test


def test_throttle_counters_are_shared_by_every_web_worker():
    env = _compose()["x-app"]["environment"]
    assert env["SCANBENCH_CACHE_URL"].startswith("redis://redis:6379/")
    assert env["SCANBENCH_CACHE_URL"] != env["CELERY_BROKER_URL"]


def test_the_local_override_uses_images_built_here():
    local = _compose("docker-compose.local.yml")["services"]
    assert {s["image"] for s in local.values()} == {
        "scanbench/postgres:local",
        "scanbench/redis:local",
        "scanbench/proxy:local",
    }
