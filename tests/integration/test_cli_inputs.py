"""The CLI takes inputs from a file (``--input @FILE``) and from standard input (``--input -``),
so an input above Linux's 128 KiB limit on one argument can be given; ``cancel`` shows a step
still running as running."""

from __future__ import annotations

import io
import json

import pytest
from celery import chain

from canvasflow.workflows import Workflow, get_run
from canvasflow.workflows.cli.main import main
from tests.integration.saga import act, effects
from tests.integration.sagacheck import new_log
from tests.integration.test_cancel_saga import in_flight_saga

pytestmark = [pytest.mark.redis, pytest.mark.worker]

ARG_MAX_STRLEN = 128 * 1024  # Linux: MAX_ARG_STRLEN, the longest single argument

echo = Workflow(
    "tests.cli_inputs",
    "1",
    build=lambda log, note: chain(act.s(label=f"got {len(note)}", log=log)),
)


def _inputs(size: int) -> tuple[str, dict]:
    log = new_log()
    return log, {"log": log, "note": "x" * size}


def test_an_input_from_a_file_can_exceed_the_limit_on_one_argument(worker, tmp_path, capsys):
    log, inputs = _inputs(200_000)
    path = tmp_path / "inputs.json"
    path.write_text(json.dumps(inputs))
    assert path.stat().st_size > ARG_MAX_STRLEN
    code = main(["start", echo.name, "--input", f"@{path}", "--wait", "--timeout", "60", "--json"])
    shown = json.loads(capsys.readouterr().out)
    assert code == 0 and shown["status"] == "succeeded", shown
    assert get_run(shown["id"]).inputs["note"] == inputs["note"]
    assert effects(log) == ["do:got 200000"]


def test_an_input_from_standard_input(worker, monkeypatch, capsys):
    log, inputs = _inputs(150_000)
    monkeypatch.setattr("sys.stdin", io.StringIO(json.dumps(inputs)))
    code = main(["start", echo.name, "--input", "-", "--wait", "--timeout", "60", "--json"])
    shown = json.loads(capsys.readouterr().out)
    assert code == 0 and shown["status"] == "succeeded", shown
    assert effects(log) == ["do:got 150000"]


@pytest.mark.parametrize(
    ("given", "told"),
    [
        (
            "@/nonexistent/inputs.json",
            "error: --input @/nonexistent/inputs.json: cannot read the file (No such file",
        ),
        ("@{bad}", "error: --input is not JSON (Expecting value: line 1 column 1 (char 0)): {bad}"),
    ],
)
def test_a_file_that_cannot_be_read_or_is_not_json_is_one_line(given, told, tmp_path, capsys):
    bad = tmp_path / "bad.json"
    bad.write_text("not json")
    assert main(["start", echo.name, "--input", given.format(bad=bad)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(told.format(bad=bad)) and err.count("\n") == 1, err


def test_cancel_shows_a_step_still_running_as_running(worker, capsys):
    run_id = in_flight_saga(new_log())  # step 1.h1.act sleeps, running when cancelled
    assert main(["cancel", run_id]) == 0
    shown = capsys.readouterr().out
    slow = next(line for line in shown.splitlines() if "1.h1.act" in line)
    assert " running " in slow and "attempts=1" in slow, shown
    assert main(["status", run_id, "--json"]) == 0
    step = next(s for s in json.loads(capsys.readouterr().out)["steps"] if s["step_id"] == "1.h1.act")
    assert step["status"] == "running" and step["worker"], step
