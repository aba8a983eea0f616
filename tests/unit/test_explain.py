"""What an error tells an operator (workflows/views/errors.py): a library's error that means one
of canvasflow's is told as that one, by the reading its module registered (config/errors.py)."""

from __future__ import annotations

from kombu.exceptions import OperationalError

from canvasflow.config.celery_app import current_app
from canvasflow.config.settings import redact
from canvasflow.workflows.views.errors import Explained, explain


def test_a_broker_that_does_not_answer_is_told_with_its_url() -> None:
    url = redact(str(current_app().conf.broker_url))
    told = explain(OperationalError("Error 111 connecting to 127.0.0.1:6379. Connection refused.\nmore"))
    assert told == Explained(
        f"the broker {url} does not answer (Error 111 connecting to 127.0.0.1:6379. Connection refused.): "
        "start it or set CANVASFLOW_BROKER_URL",
        "BrokerUnavailable",
        2,
    )


def test_an_unexpected_error_is_told_as_such() -> None:
    told = explain(KeyError("x"))
    assert told.kind == "KeyError" and told.status == 1 and "--debug" in told.message
