"""What a limit says: ``Limit(rate="5/s", concurrency=10, key=..., name=...)``, checked when declared.

A step declares its limits with ``@step(limits=Limit(...))`` (or a list of them); a capability's
limit comes from ``CANVASFLOW_CAPABILITY_LIMITS`` and holds for every step of it together.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from canvasflow.config.errors import DefinitionError, SettingsError

_RATE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(?:/\s*(s|sec|second|m|min|minute|h|hour))?\s*$")
_PER = {
    "s": 1.0,
    "sec": 1.0,
    "second": 1.0,
    "m": 60.0,
    "min": 60.0,
    "minute": 60.0,
    "h": 3600.0,
    "hour": 3600.0,
}
SETTING = "CANVASFLOW_CAPABILITY_LIMITS"


def parse_rate(text: str) -> float:
    """Starts per second of ``"5/s"``, ``"100/m"``, ``"1000/h"`` (Celery's notation); ValueError if bad."""
    match = _RATE.match(text) if isinstance(text, str) else None
    if match is None or float(match.group(1)) <= 0:
        raise ValueError(f"rate {text!r} is not a positive rate like '5/s', '100/m' or '1000/h'")
    return float(match.group(1)) / _PER[match.group(2) or "s"]


@dataclass(frozen=True)
class Limit:
    """At most ``rate`` starts (a token bucket holding ``burst`` tokens) and at most ``concurrency``
    running at once, across every worker.

    ``name`` is what the limit is counted under: steps that share a name share the limit
    (default: the step's task name). ``key``, called with the step's arguments, splits it:
    ``key=lambda order, **kw: order["customer"]`` makes one limit per customer.
    """

    rate: str | None = None
    concurrency: int | None = None
    key: Callable[..., Any] | None = None
    name: str | None = None
    burst: int = 1

    def __post_init__(self) -> None:
        problems = []
        if self.rate is None and self.concurrency is None:
            problems.append("give rate= (e.g. '5/s'), concurrency= (e.g. 10), or both")
        if self.rate is not None:
            try:
                parse_rate(self.rate)
            except ValueError as exc:
                problems.append(str(exc))
        if self.concurrency is not None and (
            isinstance(self.concurrency, bool)
            or not isinstance(self.concurrency, int)
            or self.concurrency < 1
        ):
            problems.append(f"concurrency must be an integer >= 1, got {self.concurrency!r}")
        if isinstance(self.burst, bool) or not isinstance(self.burst, int) or self.burst < 1:
            problems.append(f"burst must be an integer >= 1, got {self.burst!r}")
        if self.key is not None and not callable(self.key):
            problems.append(f"key must be a function of the step's arguments, got {self.key!r}")
        if self.name is not None and (not isinstance(self.name, str) or not self.name):
            problems.append(f"name must be a non-empty string, got {self.name!r}")
        if problems:
            raise DefinitionError("invalid Limit: " + "; ".join(problems))

    @property
    def per_second(self) -> float | None:
        return None if self.rate is None else parse_rate(self.rate)

    def named(self, default: str) -> Limit:
        """This limit counted under ``default`` unless it names itself."""
        if self.name is not None:
            return self
        return Limit(self.rate, self.concurrency, self.key, default, self.burst)


def as_limits(limits: Limit | Sequence[Limit] | None, step_name: str) -> tuple[Limit, ...]:
    """``@step(limits=...)``: one Limit or several, each named (by default after the step)."""
    if limits is None:
        return ()
    given = [limits] if isinstance(limits, Limit) else list(limits)
    wrong = [x for x in given if not isinstance(x, Limit)]
    if wrong:
        raise DefinitionError(f"step {step_name}: limits= takes Limit(...) objects, got {wrong!r}")
    return tuple(x.named(step_name) for x in given)


def capability_limits(raw: Mapping[str, Mapping[str, Any]]) -> dict[str, Limit]:
    """``{"payments": {"rate": "5/s", "concurrency": 10, "burst": 1}}`` -> a Limit per capability,
    counted under ``capability:<name>``; a bad entry is a SettingsError naming the variable."""
    out = {}
    for capability, fields in raw.items():
        unknown = set(fields) - {"rate", "concurrency", "burst"}
        if unknown:
            raise SettingsError(
                f"{SETTING}[{capability!r}]: unknown field(s) {sorted(unknown)}; use rate, concurrency, burst"
            )
        try:
            out[capability] = Limit(
                rate=fields.get("rate"),
                concurrency=fields.get("concurrency"),
                burst=fields.get("burst", 1),
                name=f"capability:{capability}",
            )
        except DefinitionError as exc:
            raise SettingsError(f"{SETTING}[{capability!r}]: {exc}") from None
    return out
