"""The Grafana dashboard and its provisioning, as a user relies on them.

Grafana starts with the provisioned data source and loads the dashboard from
the mounted folder; every panel draws from that data source with a real
query, filtered by the instance picker; panels sit on the grid without
covering each other; and the panels the runbook names are all there.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
GRAFANA = ROOT / "deploy" / "grafana"
DASHBOARDS = GRAFANA / "dashboards"
DASHBOARD = DASHBOARDS / "executor.json"
DATASOURCES = GRAFANA / "provisioning" / "datasources" / "prometheus.yml"
PROVIDERS = GRAFANA / "provisioning" / "dashboards" / "executor.yml"
# Where the compose file mounts deploy/grafana/dashboards inside the container.
MOUNTED_DASHBOARDS = "/var/lib/grafana/dashboards"
GRID_WIDTH = 24

REQUIRED_PANELS = {
    "Signals per second by outcome",
    "Signal-to-send latency (p50/p99)",
    "Exchange latency by endpoint (p50/p99)",
    "Queue depth against capacity",
    "Rate-limit waits",
    "Breaker state",
    "Active key and failovers",
    "Orders by retCode",
    "Stream lag and pending",
    "Dead letters",
    "Days to key expiry",
    "Accepted/s",
    "Breaker",
    "Kill switch",
    "Redis",
    "Stream lag",
}
SECONDS_PANELS = {
    "Signal-to-send latency (p50/p99)",
    "Exchange latency by endpoint (p50/p99)",
    "Rate-limit waits",
}
GRAFANA_VARIABLES = {"$instance", "$__rate_interval"}
INSTANCE_FILTER = 'instance=~"$instance"'
# A metric name and, when present, its label selector.
SELECTOR = re.compile(r"\b((?:executor|process)_[a-z_]+|up)\b(\{[^}]*\})?")
# The stream is shared by the group: every replica reports the same number.
GROUP_WIDE = re.compile(r"\bexecutor_stream_(?:pending|lag)\b")


def load_dashboard() -> dict[str, Any]:
    board: dict[str, Any] = json.loads(DASHBOARD.read_text())
    return board


def load_yaml(path: Path) -> dict[str, Any]:
    document: dict[str, Any] = yaml.safe_load(path.read_text())
    return document


def panels() -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = load_dashboard()["panels"]
    assert found, "the dashboard has no panels"
    return found


def panel(title: str) -> dict[str, Any]:
    matches = [p for p in panels() if p.get("title") == title]
    assert len(matches) == 1, f"expected one panel titled {title!r}, found {len(matches)}"
    return matches[0]


def exprs(of: dict[str, Any]) -> list[str]:
    return [str(target.get("expr", "")) for target in of.get("targets", [])]


def all_exprs() -> list[tuple[str, str]]:
    return [(p["title"], expr) for p in panels() for expr in exprs(p)]


def data_source() -> dict[str, Any]:
    sources = load_yaml(DATASOURCES)["datasources"]
    prometheus = [s for s in sources if s.get("name") == "Prometheus"]
    assert len(prometheus) == 1, sources
    source: dict[str, Any] = prometheus[0]
    return source


def value_mapping(of: dict[str, Any]) -> dict[str, tuple[str, str]]:
    texts = {}
    for mapping in of["fieldConfig"]["defaults"].get("mappings", []):
        if mapping.get("type") == "value":
            for value, shown in mapping["options"].items():
                texts[value] = (shown.get("text"), shown.get("color"))
    return texts


def test_the_provisioned_data_source_is_the_prometheus_of_the_compose_file() -> None:
    source = data_source()
    assert source["type"] == "prometheus"
    assert source["url"] == "http://prometheus:9090"
    assert source["isDefault"] is True
    assert source["uid"] == "prometheus"


def test_every_panel_query_and_the_instance_picker_use_the_provisioned_data_source() -> None:
    uid = data_source()["uid"]
    board = load_dashboard()
    users = [(p["title"], p.get("datasource")) for p in panels()]
    users += [
        (p["title"], target.get("datasource", p.get("datasource")))
        for p in panels()
        for target in p.get("targets", [])
    ]
    users += [(v["name"], v.get("datasource")) for v in board["templating"]["list"]]
    wrong = [(who, ds) for who, ds in users if ds != {"type": "prometheus", "uid": uid}]
    assert wrong == []


def test_grafana_loads_dashboards_from_the_folder_the_dashboard_is_mounted_at() -> None:
    providers = load_yaml(PROVIDERS)["providers"]
    assert [(p["type"], p["options"]["path"]) for p in providers] == [("file", MOUNTED_DASHBOARDS)]
    boards = [json.loads(path.read_text()) for path in sorted(DASHBOARDS.glob("*.json"))]
    assert [b["uid"] for b in boards] == ["executor"]


def test_the_dashboard_opens_on_the_last_hour_and_refreshes_itself() -> None:
    board = load_dashboard()
    assert (board["uid"], board["title"]) == ("executor", "executor")
    assert board["time"] == {"from": "now-1h", "to": "now"}
    assert board["refresh"] == "10s"
    assert board["schemaVersion"] >= 36


def test_every_panel_has_a_title_and_at_least_one_real_query() -> None:
    for p in panels():
        assert str(p.get("title", "")).strip(), f"panel {p.get('id')} has no title"
        queries = [expr for expr in exprs(p) if expr.strip()]
        assert queries, f"panel {p['title']!r} has no query"
        assert len(queries) == len(exprs(p)), f"panel {p['title']!r} has an empty query"
        refs = [target.get("refId") for target in p["targets"]]
        assert len(set(refs)) == len(refs), f"panel {p['title']!r} repeats a refId"


def test_panel_ids_and_titles_are_unique() -> None:
    ids = [p.get("id") for p in panels()]
    titles = [p["title"] for p in panels()]
    assert all(isinstance(i, int) for i in ids)
    assert len(set(ids)) == len(ids)
    assert len(set(titles)) == len(titles)


def test_panels_sit_on_the_grid_without_covering_each_other() -> None:
    boxes = []
    for p in panels():
        grid = p.get("gridPos")
        assert grid is not None, f"panel {p['title']!r} has no gridPos"
        x, y, w, h = (grid[k] for k in ("x", "y", "w", "h"))
        assert all(isinstance(v, int) for v in (x, y, w, h)), p["title"]
        assert w > 0 and h > 0 and x >= 0 and y >= 0, p["title"]
        assert x + w <= GRID_WIDTH, f"panel {p['title']!r} is wider than the grid"
        boxes.append((p["title"], x, y, w, h))
    overlaps = [
        (a[0], b[0])
        for n, a in enumerate(boxes)
        for b in boxes[n + 1 :]
        if a[1] < b[1] + b[3] and b[1] < a[1] + a[3] and a[2] < b[2] + b[4] and b[2] < a[2] + a[4]
    ]
    assert overlaps == []


def test_the_panels_the_runbook_names_are_all_there() -> None:
    titles = {p["title"] for p in panels()}
    assert REQUIRED_PANELS - titles == set()


def test_the_instance_picker_lists_every_replica_and_filters_every_query() -> None:
    variables = {v["name"]: v for v in load_dashboard()["templating"]["list"]}
    instance = variables["instance"]
    query = instance["query"]
    text = query["query"] if isinstance(query, dict) else query
    assert text == "label_values(executor_build_info, instance)"
    assert instance["multi"] is True
    assert instance["includeAll"] is True
    unfiltered = [
        (title, match.group(0))
        for title, expr in all_exprs()
        for match in SELECTOR.finditer(expr)
        if INSTANCE_FILTER not in (match.group(2) or "")
    ]
    assert unfiltered == []


def test_queries_use_no_grafana_variable_prometheus_would_not_get_replaced() -> None:
    unknown = [
        (title, name)
        for title, expr in all_exprs()
        for name in re.findall(r"\$\{?[A-Za-z_]+", expr)
        if name not in GRAFANA_VARIABLES
    ]
    assert unknown == []


def test_group_wide_stream_gauges_are_never_summed_over_replicas() -> None:
    stream = [(title, expr) for title, expr in all_exprs() if GROUP_WIDE.search(expr)]
    assert stream, "no panel shows stream lag or pending"
    assert [(t, e) for t, e in stream if "sum" in e or not e.startswith("max(")] == []


@pytest.mark.parametrize("title", ["Breaker", "Breaker state"])
def test_breaker_panels_name_and_colour_each_state(title: str) -> None:
    assert value_mapping(panel(title)) == {
        "0": ("closed", "green"),
        "1": ("half-open", "orange"),
        "2": ("open", "red"),
    }
    assert all("executor_circuit_state" in expr for expr in exprs(panel(title)))


def test_kill_switch_and_redis_stats_say_what_the_value_means() -> None:
    assert value_mapping(panel("Kill switch")) == {"0": ("off", "green"), "1": ("ON", "red")}
    assert value_mapping(panel("Redis")) == {"0": ("down", "red"), "1": ("up", "green")}


def test_durations_are_shown_in_seconds_and_key_expiry_in_days() -> None:
    for title in SECONDS_PANELS:
        assert panel(title)["fieldConfig"]["defaults"]["unit"] == "s", title
    (expiry,) = exprs(panel("Days to key expiry"))
    assert "executor_api_key_expiry_seconds" in expiry
    assert expiry.rstrip().endswith("/ 86400")


def test_every_query_parses_as_promql(tmp_path: Path) -> None:
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.skip("promtool (Debian package prometheus) is not installed")
    rules = {
        "groups": [
            {
                "name": "dashboard",
                "rules": [
                    {"record": f"dashboard:query_{n}", "expr": runnable(expr)}
                    for n, (_title, expr) in enumerate(all_exprs())
                ],
            }
        ]
    }
    path = tmp_path / "dashboard_rules.yml"
    path.write_text(yaml.safe_dump(rules))
    check = subprocess.run(
        [promtool, "check", "rules", str(path)],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert check.returncode == 0, check.stdout + check.stderr


def runnable(expr: str) -> str:
    """The query as Prometheus gets it from Grafana."""
    return expr.replace("$__rate_interval", "1m").replace("$instance", ".*")
