"""The deploy files are valid and never drift: every Kubernetes manifest against the Kubernetes
schemas (kubernetes-validate, strict), KEDA's objects against KEDA's CRD schema, the Compose file
against the Compose specification, and deploy/k8s against what `canvasflow deploy render` makes."""

from __future__ import annotations

import copy
import json
import os
import subprocess
import sys
from importlib.resources import files
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml

from tests.layout import package_dirs

ROOT = Path(__file__).resolve().parents[2]
K8S = ROOT / "deploy" / "k8s"
KEDA_SCHEMA = ROOT / "tests" / "data" / "schemas" / "keda-v1alpha1.json"
# the oldest Kubernetes still commonly run, and the newest kubernetes-validate knows
KUBE_VERSIONS = ["1.30.0", kubernetes_validate.utils.latest_version()]
RENDER_ENV = {"CANVASFLOW_ENGINES": "deploy/engines.toml"}
RENDER_ARGS = ["--workflows", "canvasflow.workflows.demo", "deploy", "render"]


def _docs(directory: Path) -> list[tuple[str, dict[str, Any]]]:
    return [
        (path.name, doc)
        for path in sorted(directory.glob("*.yaml"))
        for doc in yaml.safe_load_all(path.read_text())
        if doc
    ]


def _k8s(docs: list[tuple[str, dict[str, Any]]]) -> list[tuple[str, dict[str, Any]]]:
    return [(n, d) for n, d in docs if not d["apiVersion"].startswith(("keda.sh/", "kustomize.config"))]


def _keda(docs: list[tuple[str, dict[str, Any]]]) -> list[tuple[str, dict[str, Any]]]:
    return [(n, d) for n, d in docs if d["apiVersion"].startswith("keda.sh/")]


def _keda_errors(doc: dict[str, Any]) -> list[str]:
    schema = json.loads(KEDA_SCHEMA.read_text())["kinds"][doc["kind"]]
    return [
        f"{'/'.join(map(str, e.path))}: {e.message}"
        for e in jsonschema.Draft202012Validator(schema).iter_errors(doc)
    ]


def _render(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """``canvasflow deploy render`` in a clean environment: only the inputs given, not the session's."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith("CANVASFLOW_")}
    return subprocess.run(
        [sys.executable, "-m", "canvasflow.workflows.cli", *RENDER_ARGS, *args],
        cwd=ROOT,
        env={**clean, **RENDER_ENV, **(env or {})},
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_deploy_k8s_is_exactly_what_render_produces():
    done = _render("--check")
    assert done.returncode == 0, (
        f"deploy/k8s drifted from the registries; run `make deploy-render`:\n{done.stdout}{done.stderr}"
    )
    assert "up to date" in done.stdout


def test_check_fails_on_a_hand_edit(tmp_path):
    out = tmp_path / "k8s"
    assert _render("--out", str(out)).returncode == 0
    path = out / "worker-demo.yaml"
    path.write_text(
        path.read_text().replace("terminationGracePeriodSeconds: 630", "terminationGracePeriodSeconds: 5")
    )
    done = _render("--out", str(out), "--check")
    assert done.returncode == 1 and "worker-demo.yaml: differs" in done.stdout


def test_one_deployment_scaled_object_and_budget_per_capability_queue_and_engine():
    docs = _docs(K8S)
    kinds: dict[str, set[str]] = {}
    for _, d in docs:
        if d["kind"] != "Kustomization":
            kinds.setdefault(d["kind"], set()).add(d["metadata"]["name"])
    fleets = {f"canvasflow-worker-{n}" for n in ("demo", "ocr-gpu", "ocr-cpu")}
    assert kinds["Deployment"] == fleets | {"canvasflow-worker-control", "canvasflow-flower"}
    assert kinds["ScaledObject"] == fleets
    assert kinds["PodDisruptionBudget"] == fleets | {"canvasflow-worker-control"}
    queues = {
        d["metadata"]["name"]: [t["metadata"]["listName"] for t in d["spec"]["triggers"]]
        for _, d in docs
        if d["kind"] == "ScaledObject"
    }
    assert queues["canvasflow-worker-ocr-gpu"] == ["cap.ocr.gpu", "cap.ocr"]
    assert queues["canvasflow-worker-demo"] == ["cap.demo"]
    kustomization = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    listed = {p.name for p in K8S.glob("*.yaml")} - {"kustomization.yaml", "secret.example.yaml"}
    assert sorted(kustomization["resources"]) == sorted(listed)  # the example Secret is never applied


@pytest.mark.parametrize("version", KUBE_VERSIONS)
def test_every_kubernetes_manifest_validates_against_the_kubernetes_schemas(version):
    checked = _k8s(_docs(K8S))
    assert len(checked) >= 12
    for name, doc in checked:
        try:
            kubernetes_validate.validate(doc, version, strict=True)
        except kubernetes_validate.ValidationError as exc:
            pytest.fail(f"{name}: {doc['kind']} {doc['metadata']['name']}: {exc.message} at {list(exc.path)}")


def test_keda_objects_validate_against_the_keda_crd_schema():
    checked = _keda(_docs(K8S))
    assert {d["kind"] for _, d in checked} == {"ScaledObject", "TriggerAuthentication"}
    for name, doc in checked:
        assert _keda_errors(doc) == [], name


def test_the_validators_catch_a_misspelt_field():
    deploy = next(
        copy.deepcopy(d) for n, d in _docs(K8S) if n == "worker-demo.yaml" and d["kind"] == "Deployment"
    )
    deploy["spec"]["template"]["spec"]["terminationGracePeriodSecond"] = 60
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deploy, KUBE_VERSIONS[-1], strict=True)
    scaled = copy.deepcopy(dict(_keda(_docs(K8S)))["keda-demo.yaml"])
    scaled["spec"]["minReplicas"] = 1
    scaled["spec"]["triggers"][0]["metdata"] = scaled["spec"]["triggers"][0].pop("metadata")
    errors = _keda_errors(scaled)
    assert any("minReplicas" in e for e in errors) and any("metdata" in e for e in errors)


def test_the_rabbitmq_rendering_validates_too(tmp_path):
    out = tmp_path / "k8s"
    done = _render("--out", str(out), env={"CANVASFLOW_BROKER_URL": "amqp://guest:guest@mq:5672/prod"})
    assert done.returncode == 0, done.stderr
    docs = _docs(out)
    triggers = [t for _, d in docs if d["kind"] == "ScaledObject" for t in d["spec"]["triggers"]]
    assert triggers and {t["type"] for t in triggers} == {"rabbitmq"}
    for name, doc in _keda(docs):
        assert _keda_errors(doc) == [], name
    for _, doc in _k8s(docs):
        kubernetes_validate.validate(doc, KUBE_VERSIONS[-1], strict=True)


def test_the_image_copies_the_package_and_every_folder_it_maps():
    """The Dockerfile installs the package from what it copied: canvasflow/ and the folders that
    pyproject.toml maps into it (a folder left out would be missing from the wheel)."""
    copied = {
        line.split()[1]
        for line in (ROOT / "deploy" / "Dockerfile").read_text().splitlines()
        if line.startswith("COPY ") and "--from" not in line and "--chown" not in line
    }
    mapped = {folder.name for folder in package_dirs().values()}
    assert mapped == {"canvasflow", "config", "workers", "workflows", "compensation"}
    assert {"pyproject.toml", *mapped} <= copied


def _compose_errors(doc: dict[str, Any]) -> list[str]:
    # the Compose specification's schema, as vendored by check-jsonschema (vendor.compose-spec)
    schema = json.loads(
        files("check_jsonschema.builtin_schemas.vendor").joinpath("compose-spec.json").read_text()
    )
    validator = jsonschema.validators.validator_for(schema)(schema)
    return [f"{'/'.join(map(str, e.path))}: {e.message}" for e in validator.iter_errors(doc)]


def test_the_compose_file_validates_against_the_compose_specification():
    doc = yaml.safe_load((ROOT / "deploy" / "docker-compose.yml").read_text())
    assert _compose_errors(doc) == []
    services = doc["services"]
    assert {"redis", "postgres", "db-upgrade", "worker-demo", "worker-control", "flower"} <= set(services)
    engines = {n: s["command"] for n, s in services.items() if "--engine" in s.get("command", [])}
    assert set(engines) == {"worker-ocr-gpu", "worker-ocr-cpu"}  # one service per engine
    doc["services"]["worker-demo"]["stop_grace_perod"] = "5m"
    assert any("stop_grace_perod" in e for e in _compose_errors(doc))
