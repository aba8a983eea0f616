"""The one error hierarchy of canvasflow.

Every error a user can meet derives from :class:`CanvasflowError`; each class's
docstring is its default message and says what to do about it::

    CanvasflowError
     ├── SettingsError            a CANVASFLOW_* variable has a bad value
     ├── BrokerUnavailable        the broker URL does not answer
     ├── StateUnavailable         the state Redis does not answer
     ├── DefinitionError          a workflow or canvas cannot be compiled
     ├── WorkflowNotFound         no workflow registered under that name
     ├── InputError               inputs fail validation or are not JSON
     ├── RunNotFound              no run with that id
     ├── ResumeRefused            the run cannot be resumed (state or version)
     │    └── UpgradeRefused      the run cannot move to another version of its workflow
     ├── RunStateError            the run is not in a state that allows the action
     ├── RoutingError             no queue can take a step's capability
     ├── DeadlineExceeded         a step or run passed one of its deadlines
     ├── CompensationError        a rollback could not finish
     ├── StartRefused             a ``canvasflow.start`` message was refused (a task failure)
     ├── MessageRejected          a step message was malformed (dead-lettered)
     ├── TaskNotRegistered        a worker received a step whose task it does not have
     ├── StepRevoked              a step's message expired or was revoked before it ran
     ├── StepDeclined             a step's body raised Celery's Ignore or Reject (no requeue)
     ├── StepCrashed              deliveries of a step died running it, too many times in a row
     └── JournalTooNew            a newer canvasflow migrated the journal past this one's schema

(``PayloadTooLarge`` is an InputError.)

An error a library raises may mean one of these: the module that brings the library in says
which (:func:`reads_as`; config/celery_app.py reads kombu's ``OperationalError`` as
BrokerUnavailable), so that what explains errors to operators (workflows/views/errors.py) need
not load every library to recognise its errors.
"""

from __future__ import annotations

from collections.abc import Callable


class CanvasflowError(Exception):
    """A canvasflow operation failed."""

    def __init__(self, message: str | None = None) -> None:
        super().__init__(message or (self.__doc__ or "").strip())


class SettingsError(CanvasflowError):
    """A CANVASFLOW_* setting has a bad value: fix the variable named in the message."""


class BrokerUnavailable(CanvasflowError):
    """The broker does not answer: start Redis or point CANVASFLOW_BROKER_URL at one that runs."""


class StateUnavailable(CanvasflowError):
    """The state Redis does not answer: start it or point CANVASFLOW_STATE_URL at one that runs."""


class DefinitionError(CanvasflowError):
    """The workflow definition is invalid: fix every problem listed."""

    def __init__(self, message: str, problems: list[str] | None = None) -> None:
        self.problems = list(problems or [])
        if self.problems:
            listed = "\n".join(f"  - {p}" for p in self.problems)
            n = len(self.problems)
            message = f"{message} for {n} reason{'s' if n != 1 else ''}:\n{listed}"
        super().__init__(message)


class WorkflowNotFound(CanvasflowError):
    """No workflow is registered under that name: check `canvasflow workflows` for the names."""


class DefinitionWarning(UserWarning):
    """A workflow does what Celery allows but seldom means: the warning says what to write instead."""


class InputError(CanvasflowError):
    """The inputs were refused before anything was enqueued: correct them and start again."""


class RunNotFound(CanvasflowError):
    """No run has that id: list runs with `canvasflow runs`."""


class ResumeRefused(CanvasflowError):
    """The run cannot be resumed: only failed or cancelled runs (succeeded ones from a step) can."""


class UpgradeRefused(ResumeRefused):
    """The run cannot move to that version: resume it under its own version, or start a new run."""


class RunStateError(CanvasflowError):
    """The run is not in a state that allows this action."""


class RoutingError(CanvasflowError):
    """No queue can take this step: register a worker fleet for its capability."""


class DeadlineExceeded(CanvasflowError):
    """A step or run passed its deadline (schedule_to_start, start_to_close, timeout or a
    response timeout): it failed and its run rolled back; raise the limit or fix what held it."""


class EngineError(CanvasflowError):
    """The engine could not run this step (its backend is down or refused it): raise it from a step
    so that canvasflow re-routes the step to the capability's next engine (up to MAX_FALLBACKS)."""


class CompensationError(CanvasflowError):
    """A rollback could not finish: see the recorded compensation errors, then retry them."""


class PayloadTooLarge(InputError):
    """A value is larger than CANVASFLOW_MAX_PAYLOAD_BYTES: pass it by reference (canvasflow.blobs)."""


class StartRefused(CanvasflowError):
    """canvasflow.start refused the message: fix the workflow name or inputs the reason names.

    Raised by the ``canvasflow.start`` task so that the sender, the result backend and Flower
    see a FAILURE with the reason; never retried (the same message would be refused again).
    """


class MessageRejected(CanvasflowError):
    """A message on a canvasflow queue was malformed: it was dead-lettered (`canvasflow deadletters`)."""


class TaskNotRegistered(CanvasflowError):
    """A worker received a step whose task it does not have (its module is not imported there):
    the step fails with this error; import the module in the workers of that queue
    (CANVASFLOW_WORKFLOW_MODULES or the ``-A`` app), then ``canvasflow resume`` the run."""


class StepRevoked(CanvasflowError):
    """A step of a running run will not run: its message expired (Celery's ``expires``) before a
    worker took it, or it was revoked from outside canvasflow. The step fails with this error and
    the run rolls back; give the step a longer ``expires`` (or none), then ``canvasflow resume``."""


class StepDeclined(CanvasflowError):
    """A step's body raised Celery's ``Ignore`` (``self.replace`` does too) or ``Reject`` without
    requeue: it neither returned nor failed, so its run would wait for it for ever. The step fails
    with this error and the run rolls back; return a value or raise an error (start a
    sub-workflow for more steps), then ``canvasflow resume`` the run."""


class StepCrashed(CanvasflowError):
    """Deliveries of a step died running it ``CANVASFLOW_STEP_MAX_CRASHES`` times in a row (the
    step kills its process: a crash, ``os._exit``, the OOM killer): it is not run again; the step
    fails with this error and the run rolls back. Fix the step, then ``canvasflow resume``."""


class JournalTooNew(CanvasflowError):
    """The journal's schema was migrated by a newer canvasflow than this process runs: upgrade
    canvasflow here too (workers, clients, control workers), or point CANVASFLOW_DATABASE_URL at
    a journal of this release. During a rolling upgrade, migrate once the older fleet is gone."""


# what an error of a library means, as one of canvasflow's errors (None: none of its errors)
Reading = Callable[[BaseException], CanvasflowError | None]
_readings: list[Reading] = []


def reads_as(reading: Reading) -> Reading:
    """Register ``reading`` (a decorator): the CanvasflowError a library's error means."""
    _readings.append(reading)
    return reading


def as_canvasflow_error(exc: BaseException) -> BaseException:
    """``exc`` as the CanvasflowError a registered reading makes of it, else ``exc`` itself."""
    for reading in _readings:
        ours = reading(exc)
        if ours is not None:
            return ours
    return exc


def first_line(exc: BaseException) -> str:
    """The first line of an error's message (at most 300 characters), else its type's name."""
    text = str(exc).strip().splitlines()
    return text[0][:300] if text else type(exc).__name__
