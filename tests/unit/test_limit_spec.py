"""Limits as declared: rates parsed, bad limits refused when declared, capability limits from settings."""

from __future__ import annotations

import pytest

from canvasflow.config.errors import DefinitionError, SettingsError
from canvasflow.workers.limits.spec import Limit, as_limits, capability_limits, parse_rate
from canvasflow.workers.limits.store import limit_base


@pytest.mark.parametrize(
    ("text", "per_second"), [("5/s", 5.0), ("120/m", 2.0), ("3600/h", 1.0), ("2.5", 2.5)]
)
def test_rates_in_celery_notation(text: str, per_second: float) -> None:
    assert parse_rate(text) == pytest.approx(per_second)


@pytest.mark.parametrize("text", ["", "fast", "0/s", "5/d", "-1/s"])
def test_a_bad_rate_is_refused(text: str) -> None:
    with pytest.raises(ValueError, match="not a positive rate like '5/s'"):
        parse_rate(text)


def test_a_limit_lists_every_problem_at_once() -> None:
    with pytest.raises(DefinitionError) as err:
        Limit(rate="often", concurrency=0, burst=0, key="customer")  # type: ignore[arg-type]
    message = str(err.value)
    for part in ("'often'", "concurrency must be an integer >= 1", "burst must be", "key must be a function"):
        assert part in message
    with pytest.raises(DefinitionError, match="give rate="):
        Limit()


def test_step_limits_are_named_after_the_step_unless_they_name_themselves() -> None:
    own, shared = as_limits([Limit(rate="5/s"), Limit(concurrency=2, name="gateway")], "shop.charge")
    assert (own.name, shared.name) == ("shop.charge", "gateway")
    assert as_limits(None, "x") == ()
    with pytest.raises(DefinitionError, match="takes Limit"):
        as_limits(["5/s"], "shop.charge")  # type: ignore[list-item]


def test_capability_limits_from_the_settings() -> None:
    limits = capability_limits({"payments": {"rate": "5/s", "concurrency": 10}})
    assert limits["payments"] == Limit(rate="5/s", concurrency=10, name="capability:payments")
    with pytest.raises(SettingsError, match=r"CANVASFLOW_CAPABILITY_LIMITS\['payments'\]: unknown field"):
        capability_limits({"payments": {"rps": 5}})
    with pytest.raises(SettingsError, match="not a positive rate"):
        capability_limits({"payments": {"rate": "lots"}})


def test_both_keys_of_a_limit_share_one_hash_tag() -> None:
    base = limit_base("cf", "charge", "customer-7")
    assert base == "cf:limit:{charge|customer-7}"
    long = limit_base("cf", "charge", "x" * 500)
    assert len(long) < 200 and long != limit_base("cf", "charge", "x" * 499)
