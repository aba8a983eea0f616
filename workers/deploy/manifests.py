"""Kubernetes objects for a planned deployment: plain dicts, ready for YAML. Pure functions.

Every canvasflow pod runs the same image with the same settings (the ``canvasflow-config``
ConfigMap and the ``canvasflow-secrets`` Secret); workers stop with a warm shutdown on SIGTERM
within ``terminationGracePeriodSeconds``, and are probed by ``canvasflow worker-probe`` (their
own heartbeat in Redis), not by a broadcast ping.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from canvasflow.workers.deploy.plan import Fleet

Doc = dict[str, Any]
SECRET = "canvasflow-secrets"
CONFIG = "canvasflow-config"
ENGINES = "canvasflow-engines"
ENGINES_DIR = "/etc/canvasflow"
# Flower's settings: flowerconfig.py, written into the deploy folder beside these manifests,
# made a ConfigMap by kustomize (configMapGenerator) and mounted here
FLOWER_CONF = "flowerconfig.py"
FLOWER_CONFIG_MAP = "canvasflow-flower-config"
FLOWER_CONF_DIR = "/etc/canvasflow/flower"
NAME = {"app.kubernetes.io/name": "canvasflow"}
SECRET_ENV = ("CANVASFLOW_BROKER_URL", "CANVASFLOW_RESULT_BACKEND", "CANVASFLOW_DATABASE_URL")


@dataclass(frozen=True)
class Target:
    """Where and how the manifests deploy: image, namespace, the broker KEDA reads, scaling."""

    image: str = "registry.example.com/canvasflow:0.1.0"
    namespace: str = "canvasflow"
    broker: Literal["redis", "rabbitmq"] = "redis"
    redis_db: int = 0  # the broker's Redis database (the /0 of CANVASFLOW_BROKER_URL)
    min_replicas: int = 1
    max_replicas: int = 20
    backlog_per_replica: int = 20  # KEDA's target: waiting messages per replica
    engines_file: str | None = None  # the engines file's name in the canvasflow-engines ConfigMap
    app: str | None = None  # the project's Celery app (`canvasflow -A`); None: canvasflow.app

    @property
    def trigger_auth(self) -> str:
        return f"canvasflow-{self.broker}"


def _meta(name: str, t: Target, labels: dict[str, str] | None = None) -> Doc:
    return {"name": name, "namespace": t.namespace, "labels": {**NAME, **(labels or {})}}


def fleet_labels(f: Fleet) -> dict[str, str]:
    labels = {"app.kubernetes.io/component": "worker" if f.capability else "control-worker"}
    if f.capability:
        labels["canvasflow.io/capability"] = f.capability
    if f.engine:
        labels["canvasflow.io/engine"] = f.engine
    return labels


def deployment_name(f: Fleet) -> str:
    return f"canvasflow-worker-{f.name}"


def _secret_env(*names: str) -> list[Doc]:
    return [{"name": n, "valueFrom": {"secretKeyRef": {"name": SECRET, "key": n}}} for n in names]


def _hardened() -> Doc:
    return {
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": True,
        "capabilities": {"drop": ["ALL"]},
    }


def _pod_security() -> Doc:
    return {
        "runAsNonRoot": True,
        "runAsUser": 10001,
        "runAsGroup": 10001,
        "fsGroup": 10001,
        "seccompProfile": {"type": "RuntimeDefault"},
    }


def _probe(node: str, period: int, failures: int) -> Doc:
    return {
        "exec": {"command": ["canvasflow", "worker-probe", "--name", node]},
        "periodSeconds": period,
        "timeoutSeconds": 10,
        "failureThreshold": failures,
    }


def deployment(f: Fleet, t: Target) -> Doc:
    """A worker fleet. Capability fleets have no ``replicas`` (KEDA owns it); the control worker 2."""
    labels = fleet_labels(f)
    env: list[Doc] = []
    mounts: list[Doc] = [{"name": "tmp", "mountPath": "/tmp"}]
    volumes: list[Doc] = [{"name": "tmp", "emptyDir": {}}]
    if t.engines_file:
        env.append({"name": "CANVASFLOW_ENGINES", "value": f"{ENGINES_DIR}/{t.engines_file}"})
        mounts.append({"name": "engines", "mountPath": ENGINES_DIR, "readOnly": True})
        volumes.append({"name": "engines", "configMap": {"name": ENGINES}})
    container: Doc = {
        "name": "worker",
        "image": t.image,
        "args": list(f.args),
        "envFrom": [{"configMapRef": {"name": CONFIG}}],
        "env": env + _secret_env(*SECRET_ENV),
        "resources": {
            "requests": {"cpu": "500m" if f.capability else "250m", "memory": "384Mi"},
            "limits": {"memory": "768Mi"},
        },
        # started = its first heartbeat (up to 5 minutes: a worker waits for its database);
        # ready/alive = the heartbeat stays fresh (2 minutes of silence before a restart)
        "startupProbe": _probe(f.node, 10, 30),
        "readinessProbe": _probe(f.node, 10, 3),
        "livenessProbe": _probe(f.node, 30, 4),
        "securityContext": _hardened(),
        "volumeMounts": mounts,
    }
    pod: Doc = {
        "terminationGracePeriodSeconds": f.grace,
        "enableServiceLinks": False,
        "securityContext": _pod_security(),
    }
    if not f.capability:  # the journal's schema is brought to head before any control worker runs
        pod["initContainers"] = [
            {
                "name": "db-upgrade",
                "image": t.image,
                "args": ["db", "upgrade"],
                "envFrom": [{"configMapRef": {"name": CONFIG}}],
                "env": _secret_env("CANVASFLOW_DATABASE_URL"),
                "securityContext": _hardened(),
                "volumeMounts": [{"name": "tmp", "mountPath": "/tmp"}],
            }
        ]
    pod["containers"] = [container]
    pod["volumes"] = volumes
    spec: Doc = {} if f.capability else {"replicas": 2}
    spec.update(
        {
            "revisionHistoryLimit": 5,
            "selector": {"matchLabels": {**NAME, **labels}},
            # new pods start before old ones drain: capacity never drops during a rollout
            "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": "25%", "maxUnavailable": 0}},
            "template": {"metadata": {"labels": {**NAME, **labels}}, "spec": pod},
        }
    )
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": _meta(deployment_name(f), t, labels),
        "spec": spec,
    }


def disruption_budget(f: Fleet, t: Target) -> Doc:
    """Node drains evict one pod of a fleet at a time (each drains warmly); the control worker
    keeps one replica up."""
    labels = fleet_labels(f)
    limit = {"maxUnavailable": 1} if f.capability else {"minAvailable": 1}
    return {
        "apiVersion": "policy/v1",
        "kind": "PodDisruptionBudget",
        "metadata": _meta(deployment_name(f), t, labels),
        "spec": {**limit, "selector": {"matchLabels": {**NAME, **labels}}},
    }


def _trigger(queue: str, t: Target) -> Doc:
    target = str(t.backlog_per_replica)
    if t.broker == "rabbitmq":
        metadata = {"protocol": "amqp", "queueName": queue, "mode": "QueueLength", "value": target}
    else:
        metadata = {
            "listName": queue,
            "listLength": target,
            "databaseIndex": str(t.redis_db),
            "enableTLS": "false",
        }
    return {"type": t.broker, "metadata": metadata, "authenticationRef": {"name": t.trigger_auth}}


def scaled_object(f: Fleet, t: Target) -> Doc:
    """KEDA scales a fleet on the backlog of each queue it consumes (the larger wins)."""
    return {
        "apiVersion": "keda.sh/v1alpha1",
        "kind": "ScaledObject",
        "metadata": _meta(deployment_name(f), t, fleet_labels(f)),
        "spec": {
            "scaleTargetRef": {"name": deployment_name(f)},
            "pollingInterval": 15,
            "cooldownPeriod": 300,
            "minReplicaCount": t.min_replicas,
            "maxReplicaCount": t.max_replicas,
            "advanced": {
                "horizontalPodAutoscalerConfig": {
                    "behavior": {
                        "scaleDown": {
                            "stabilizationWindowSeconds": 300,
                            "policies": [{"type": "Percent", "value": 50, "periodSeconds": 60}],
                        }
                    }
                }
            },
            "triggers": [_trigger(q, t) for q in f.queues],
        },
    }


def trigger_authentication(t: Target) -> Doc:
    """KEDA's credentials for the broker, read by the KEDA operator from the Secret."""
    if t.broker == "rabbitmq":
        refs = [{"parameter": "host", "name": SECRET, "key": "KEDA_RABBITMQ_HOST"}]
    else:
        refs = [
            {"parameter": "address", "name": SECRET, "key": "KEDA_REDIS_ADDRESS"},
            {"parameter": "password", "name": SECRET, "key": "KEDA_REDIS_PASSWORD"},
        ]
    return {
        "apiVersion": "keda.sh/v1alpha1",
        "kind": "TriggerAuthentication",
        "metadata": _meta(t.trigger_auth, t),
        "spec": {"secretTargetRef": refs},
    }


def namespace(t: Target) -> Doc:
    return {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": t.namespace, "labels": NAME}}


def config_map(name: str, data: dict[str, str], t: Target) -> Doc:
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": _meta(name, t), "data": data}


def secret_example(t: Target) -> Doc:
    data = {
        "CANVASFLOW_BROKER_URL": "redis://:CHANGE-ME@redis.example.internal:6379/0",
        "CANVASFLOW_RESULT_BACKEND": "redis://:CHANGE-ME@redis.example.internal:6379/0",
        "CANVASFLOW_DATABASE_URL": "postgresql://canvasflow:CHANGE-ME@postgres.example.internal:5432/canvasflow",
        "FLOWER_BASIC_AUTH": "admin:CHANGE-ME",
    }
    if t.broker == "rabbitmq":
        data["CANVASFLOW_BROKER_URL"] = (
            "amqp://canvasflow:CHANGE-ME@rabbitmq.example.internal:5672/canvasflow"
        )
        data["KEDA_RABBITMQ_HOST"] = data["CANVASFLOW_BROKER_URL"]
    else:
        data["KEDA_REDIS_ADDRESS"] = "redis.example.internal:6379"
        data["KEDA_REDIS_PASSWORD"] = "CHANGE-ME"
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": _meta(SECRET, t),
        "type": "Opaque",
        "stringData": data,
    }


def flower(t: Target) -> list[Doc]:
    """Flower (one replica: its state is in memory, saved to a volume claim) and its ClusterIP Service."""
    labels = {"app.kubernetes.io/component": "flower"}
    probe = {"httpGet": {"path": "/healthcheck", "port": "http"}, "timeoutSeconds": 5}
    container = {
        "name": "flower",
        "image": t.image,
        "command": ["celery"],
        "args": [
            "-A",
            t.app or "canvasflow.app",
            "flower",
            f"--conf={FLOWER_CONF_DIR}/{FLOWER_CONF}",
            "--port=5555",
        ],
        "ports": [{"name": "http", "containerPort": 5555}],
        "envFrom": [{"configMapRef": {"name": CONFIG}}],
        "env": [
            *_secret_env("CANVASFLOW_BROKER_URL", "CANVASFLOW_RESULT_BACKEND", "FLOWER_BASIC_AUTH"),
            {"name": "FLOWER_DB", "value": "/data/flower.db"},  # persistent state (flowerconfig.py)
        ],
        "resources": {"requests": {"cpu": "100m", "memory": "256Mi"}, "limits": {"memory": "1Gi"}},
        "readinessProbe": {**probe, "periodSeconds": 10},
        "livenessProbe": {**probe, "initialDelaySeconds": 15, "periodSeconds": 30, "failureThreshold": 3},
        "securityContext": _hardened(),
        "volumeMounts": [
            {"name": "tmp", "mountPath": "/tmp"},
            {"name": "state", "mountPath": "/data"},
            {"name": "conf", "mountPath": FLOWER_CONF_DIR, "readOnly": True},
        ],
    }
    claim = {
        "apiVersion": "v1",
        "kind": "PersistentVolumeClaim",
        "metadata": _meta("canvasflow-flower-state", t, labels),
        "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}},
    }
    deploy = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": _meta("canvasflow-flower", t, labels),
        "spec": {
            "replicas": 1,
            "revisionHistoryLimit": 5,
            "selector": {"matchLabels": {**NAME, **labels}},
            "strategy": {"type": "Recreate"},
            "template": {
                "metadata": {"labels": {**NAME, **labels}},
                "spec": {
                    "enableServiceLinks": False,
                    "securityContext": _pod_security(),
                    "containers": [container],
                    "volumes": [
                        {"name": "tmp", "emptyDir": {}},
                        {"name": "state", "persistentVolumeClaim": {"claimName": "canvasflow-flower-state"}},
                        {"name": "conf", "configMap": {"name": FLOWER_CONFIG_MAP}},
                    ],
                },
            },
        },
    }
    service = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": _meta("canvasflow-flower", t, labels),
        "spec": {
            "type": "ClusterIP",
            "selector": {**NAME, **labels},
            "ports": [{"name": "http", "port": 5555, "targetPort": "http"}],
        },
    }
    return [deploy, service, claim]
