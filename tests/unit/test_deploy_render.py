"""deploy render: which fleets, their grace periods, their objects, and drift detection."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from celery import Celery

from canvasflow.config.settings import load_settings
from canvasflow.workers.deploy import render as render_module
from canvasflow.workers.deploy.manifests import Target, deployment
from canvasflow.workers.deploy.plan import Longest, grace_period, longest_step, plan_fleets
from canvasflow.workers.deploy.render import deployed_capabilities, drift, render, step_limits, write
from canvasflow.workers.engines import Engine

GPU = Engine("gpu", "ocr", priority=10, resources={"gpu": 1})
CPU = Engine("cpu", "ocr", priority=1)


def _app() -> Celery:
    app = Celery("deploy-test", set_as_current=False)

    @app.task(name="pay.charge", time_limit=120, shared=False)
    def charge() -> None: ...

    @app.task(name="pay.refund", soft_time_limit=45, shared=False)
    def refund() -> None: ...

    @app.task(name="ship.label", shared=False)
    def label() -> None: ...

    return app


CAPS = {"payments": ["pay.charge", "pay.refund"], "shipping": ["ship.label"]}


def test_the_longest_step_is_the_largest_declared_limit_or_the_default_when_one_is_missing():
    assert longest_step([120, 45.2], default=600) == Longest(120, True)
    assert longest_step([0.5], default=600) == Longest(1, True)  # whole seconds, rounded up
    assert longest_step([120, None], default=600) == Longest(600, False)
    assert longest_step([900, None], default=600) == Longest(900, False)
    assert longest_step([], default=600) == Longest(600, False)
    assert grace_period(Longest(120, True), margin=30) == 150


def test_step_limits_read_hard_then_soft_limits_then_the_apps_default():
    app = _app()
    assert step_limits(app, CAPS) == {"payments": [120, 45], "shipping": [None]}
    app.conf.task_time_limit = 300
    assert step_limits(app, CAPS)["shipping"] == [300]


def test_one_fleet_per_capability_one_per_engine_and_the_control_worker_last():
    engines = [GPU, CPU, Engine("flow", "ocr", workflow="ocr_flow")]
    fleets = plan_fleets(
        {"payments": [120, 45], "ocr": [None]}, engines, default_seconds=600, margin=30, concurrency=3
    )
    assert [f.name for f in fleets] == ["ocr-cpu", "ocr-gpu", "payments", "control"]
    by = {f.name: f for f in fleets}
    assert by["ocr-gpu"].queues == ("cap.ocr.gpu", "cap.ocr")
    assert by["ocr-gpu"].args == ("worker", "--capability", "ocr", "--engine", "gpu", "--concurrency", "3")
    assert by["ocr-gpu"].node == "ocr.gpu" and by["ocr-gpu"].grace == 630
    assert by["payments"].queues == ("cap.payments",) and by["payments"].grace == 150
    assert by["control"].queues == ("canvasflow", "canvasflow.control")
    assert "--control" in by["control"].args


def test_an_engine_without_imported_steps_still_gets_its_fleet():
    fleets = plan_fleets({}, [GPU], default_seconds=60, margin=5, concurrency=2)
    assert [f.name for f in fleets] == ["ocr-gpu", "control"]


def test_canvasflows_own_tasks_do_not_ask_for_a_fleet():
    caps = {"default": ["canvasflow.aggregate"], "demo": ["demo.add", "canvasflow.x"]}
    assert deployed_capabilities(caps) == {"demo": ["demo.add"]}


def test_the_deployment_stops_within_the_grace_period_and_is_probed_by_its_heartbeat():
    (fleet, _) = plan_fleets({"payments": [120]}, [], default_seconds=600, margin=30, concurrency=2)
    doc = deployment(fleet, Target())
    pod = doc["spec"]["template"]["spec"]
    assert pod["terminationGracePeriodSeconds"] == 150
    assert "replicas" not in doc["spec"]  # KEDA owns it
    worker = pod["containers"][0]
    assert worker["args"] == ["worker", "--capability", "payments", "--concurrency", "2"]
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        assert worker[probe]["exec"]["command"] == ["canvasflow", "worker-probe", "--name", "payments"]


def _render(tmp_path: Path, target: Target | None = None, **env: object) -> tuple[Any, dict[str, list[dict]]]:
    # the harness's session settings (a 10 s visibility timeout, its own Redis) are not the point here
    base: dict[str, object] = {"visibility_timeout": 3600, "broker_url": "redis://127.0.0.1:6379/0"}
    s = load_settings(**{**base, "engines": None, **env})
    rendered = render(s, target or Target(), app=_app(), capabilities=CAPS, engines=[GPU])
    docs = {
        name: list(yaml.safe_load_all(text))
        for name, text in rendered.files.items()
        if name.endswith(".yaml")
    }
    return rendered, docs


def _containers(docs: dict[str, list[dict]]) -> dict[str, dict]:
    return {
        doc["metadata"]["name"]: doc["spec"]["template"]["spec"]["containers"][0]
        for ds in docs.values()
        for doc in ds
        if doc["kind"] == "Deployment"
    }


def test_an_app_given_with_dash_a_runs_in_every_worker_and_in_flower(tmp_path):
    _, docs = _render(tmp_path, Target(app="shop.celery"))
    containers = _containers(docs)
    workers = {name: c for name, c in containers.items() if name.startswith("canvasflow-worker-")}
    assert len(workers) == 4 and all(
        c["args"][:3] == ["-A", "shop.celery", "worker"] for c in workers.values()
    )
    assert containers["canvasflow-flower"]["args"][:3] == ["-A", "shop.celery", "flower"]
    _, plain = _render(tmp_path)
    assert _containers(plain)["canvasflow-worker-payments"]["args"][0] == "worker"
    assert _containers(plain)["canvasflow-flower"]["args"][:2] == ["-A", "canvasflow.app"]


def test_flower_reads_the_settings_written_into_the_deploy_folder(tmp_path):
    rendered, docs = _render(tmp_path)
    shipped = Path(render_module.__file__).with_name("flowerconfig.py").read_text()
    assert rendered.files["flowerconfig.py"] == shipped
    write(tmp_path, rendered)
    assert (tmp_path / "flowerconfig.py").read_text() == shipped
    kustomization = docs["kustomization.yaml"][0]
    assert kustomization["configMapGenerator"] == [
        {"name": "canvasflow-flower-config", "files": ["flowerconfig.py"]}
    ]
    flower = docs["flower.yaml"][0]["spec"]["template"]["spec"]
    mount = next(m for m in flower["containers"][0]["volumeMounts"] if m["name"] == "conf")
    assert f"--conf={mount['mountPath']}/flowerconfig.py" in flower["containers"][0]["args"]
    conf = next(v for v in flower["volumes"] if v["name"] == "conf")
    assert conf["configMap"]["name"] == "canvasflow-flower-config"
    assert not any("/app/deploy" in arg for arg in flower["containers"][0]["args"])


def test_render_lists_every_file_in_the_kustomization_and_scales_each_fleet(tmp_path):
    rendered, docs = _render(tmp_path)
    kustomization = docs.pop("kustomization.yaml")[0]
    assert sorted(kustomization["resources"]) == sorted(set(docs) - {"secret.example.yaml"})
    assert set(rendered.files) - set(docs) == {"kustomization.yaml", "flowerconfig.py"}
    scaled = {
        d["spec"]["scaleTargetRef"]["name"] for ds in docs.values() for d in ds if d["kind"] == "ScaledObject"
    }
    assert scaled == {"canvasflow-worker-payments", "canvasflow-worker-shipping", "canvasflow-worker-ocr-gpu"}
    budgets = [d for ds in docs.values() for d in ds if d["kind"] == "PodDisruptionBudget"]
    assert len(budgets) == 4  # three fleets and the control worker
    config = docs["configmap.yaml"][0]["data"]
    assert config["CANVASFLOW_CAPABILITIES"] == '["ocr", "payments", "shipping"]'
    assert rendered.warnings == []


def test_a_grace_period_reaching_the_visibility_timeout_is_warned_about(tmp_path):
    rendered, _ = _render(tmp_path, visibility_timeout=600)  # shipping: 600 s default + 30
    assert len(rendered.warnings) == 2  # shipping and ocr-gpu (no declared limits)
    assert "CANVASFLOW_VISIBILITY_TIMEOUT=600" in rendered.warnings[0]


def test_a_rabbitmq_broker_gets_keda_rabbitmq_triggers(tmp_path):
    _, docs = _render(tmp_path, broker_url="amqp://guest:guest@mq:5672/prod")
    trigger = docs["keda-payments.yaml"][0]["spec"]["triggers"][0]
    assert trigger["type"] == "rabbitmq" and trigger["metadata"]["queueName"] == "cap.payments"
    assert docs["keda-auth.yaml"][0]["metadata"]["name"] == "canvasflow-rabbitmq"


def test_the_redis_trigger_reads_the_brokers_database(tmp_path):
    _, docs = _render(tmp_path, broker_url="redis://redis:6379/3")
    assert docs["keda-payments.yaml"][0]["spec"]["triggers"][0]["metadata"]["databaseIndex"] == "3"


def test_drift_names_changed_missing_and_stale_files_and_write_fixes_them(tmp_path):
    rendered, _ = _render(tmp_path)
    assert write(tmp_path, rendered)  # all new
    assert drift(tmp_path, rendered) == []
    (tmp_path / "worker-payments.yaml").write_text("edited by hand\n")
    (tmp_path / "keda-auth.yaml").unlink()
    stale = tmp_path / "worker-gone.yaml"
    stale.write_text(rendered.files["namespace.yaml"])  # a generated file of a removed fleet
    mine = tmp_path / "patch.yaml"
    mine.write_text("# my overlay patch\n")
    assert drift(tmp_path, rendered) == [
        "keda-auth.yaml: missing",
        "worker-payments.yaml: differs",
        "worker-gone.yaml: no longer rendered",
    ]
    write(tmp_path, rendered)
    assert drift(tmp_path, rendered) == []
    assert not stale.exists() and mine.exists()  # only generated files are removed


@pytest.mark.parametrize("bad", [{"deploy_step_seconds": 0}, {"deploy_grace_margin": -1}])
def test_bad_deploy_settings_are_refused(bad):
    from canvasflow.config.errors import SettingsError

    with pytest.raises(SettingsError, match="CANVASFLOW_DEPLOY_"):
        load_settings(**bad)
