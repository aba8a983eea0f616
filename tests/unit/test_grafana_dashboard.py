"""deploy/grafana/canvasflow.json: a dashboard Grafana can import, drawing canvasflow's metrics.

(That each metric it draws exists is checked against a real scrape in
tests/integration/test_telemetry_workers.py.)"""

from __future__ import annotations

import json
import re
from pathlib import Path

DASHBOARD = Path(__file__).resolve().parents[2] / "deploy" / "grafana" / "canvasflow.json"


def test_every_panel_queries_canvasflow_metrics_through_the_chosen_data_source() -> None:
    dash = json.loads(DASHBOARD.read_text())
    assert dash["uid"] == "canvasflow" and dash["title"] == "canvasflow"
    variables = {v["name"]: v for v in dash["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource" and {"workflow", "capability"} <= set(variables)
    ids = [p["id"] for p in dash["panels"]]
    assert len(ids) == len(set(ids)) >= 10
    for panel in dash["panels"]:
        assert panel["datasource"]["uid"] == "${datasource}", panel["title"]
        assert panel["targets"], panel["title"]
        for target in panel["targets"]:
            assert re.search(r"\bcanvasflow_[a-z_]+", target["expr"]), (panel["title"], target["expr"])
            assert target["expr"].count("(") == target["expr"].count(")"), target["expr"]
        pos = panel["gridPos"]
        assert pos["x"] >= 0 and pos["x"] + pos["w"] <= 24, panel["title"]
