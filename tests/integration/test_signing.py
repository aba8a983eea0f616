"""Message signing (Celery's ``auth`` serializer, CANVASFLOW_SECURITY_*): a signed client's run
succeeds on a signing worker; an unsigned message is refused, dead-lettered, never run."""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID

from canvasflow.config import deadletters
from canvasflow.config.celery_app import app
from tests.harness.plugin import ROOT, StartWorker

pytestmark = [pytest.mark.redis, pytest.mark.worker]
MODULES = json.dumps(
    [*json.loads(os.environ["CANVASFLOW_WORKFLOW_MODULES"]), "tests.integration.badinput_steps"]
)
CLIENT = """
import json
from canvasflow.workflows import start
from tests.integration.badinput_steps import simple
record = start(simple.name, {"x": 3}).wait(60)
print(json.dumps([record.status, record.result]))
"""


def make_keys(where: Path) -> dict[str, str]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "canvasflow-test")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .sign(key, hashes.SHA256())
    )
    (where / "certs").mkdir()
    (where / "worker.key").write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    (where / "certs" / "worker.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return {
        "CANVASFLOW_SECURITY_KEY": str(where / "worker.key"),
        "CANVASFLOW_SECURITY_CERTIFICATE": str(where / "certs" / "worker.pem"),
        "CANVASFLOW_SECURITY_CERT_STORE": str(where / "certs" / "*.pem"),
    }


def test_signed_runs_succeed_and_unsigned_messages_are_refused(
    celery_worker_factory: StartWorker, tmp_path: Path
) -> None:
    keys = make_keys(tmp_path)
    env = {**keys, "CANVASFLOW_WORKFLOW_MODULES": MODULES}
    # the harness pings unsigned: a signing worker refuses that too, so wait for its log line
    worker = celery_worker_factory(extra_env=env, ready_timeout=None)
    deadline = time.monotonic() + 60
    while " ready." not in worker.read_log() and time.monotonic() < deadline and worker.alive:
        time.sleep(0.3)
    assert " ready." in worker.read_log(), worker.log_tail()
    out = subprocess.run(
        [sys.executable, "-c", CLIENT],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT), **env},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    assert json.loads(out.stdout.strip().splitlines()[-1]) == ["succeeded", [5]]

    marker = f"unsigned-{uuid.uuid4().hex}"
    unsigned = app.send_task("demo.echo", args=[marker], queue="cap.demo")  # this process signs nothing
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        letters = [d for d in deadletters.recent(200) if d.get("task_id") == unsigned.id]
        if letters:
            break
        time.sleep(0.3)
    assert letters and letters[0]["reason"].startswith("refused content (ContentDisallowed"), letters
    assert unsigned.state == "PENDING"  # it never ran
    assert worker.alive and "Task demo.echo[" + unsigned.id + "] received" not in worker.read_log()
