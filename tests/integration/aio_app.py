"""A Starlette app that starts and reads runs with ``canvasflow.aio``, and measures its own event
loop's lag: ``tests/integration/test_aio.py`` serves it with uvicorn in a process of its own.

POST /orders?n=N     start ``tests.aio_quick`` (one ``demo.add`` step) and read the run back
POST /blocking?n=N   the same with the blocking client called on the loop (the contrast)
GET  /wait/{id}      ``aio.wait`` for the run
GET  /lag            the loop's lag since the last ``POST /lag`` (which resets it)
"""

from __future__ import annotations

import asyncio
import contextlib
import statistics
import time
from collections.abc import AsyncIterator

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from canvasflow import aio
from canvasflow.workers.demo import add
from canvasflow.workflows import Workflow, client

TICK = 0.005  # the monitor asks to sleep this long; any more it sleeps is lag
quick = Workflow("tests.aio_quick", "1", build=lambda n: add.s(n, 1))
lags: list[float] = []


async def _monitor() -> None:
    while True:
        began = time.perf_counter()
        await asyncio.sleep(TICK)
        lags.append(time.perf_counter() - began - TICK)


@contextlib.asynccontextmanager
async def lifespan(app: Starlette) -> AsyncIterator[None]:
    task = asyncio.create_task(_monitor())
    yield
    task.cancel()


async def orders(request: Request) -> JSONResponse:
    run = await aio.start(quick.name, {"n": int(request.query_params["n"])})
    record = await aio.get_run(run.id)
    return JSONResponse({"id": run.id, "status": record.status, "steps": len(record.steps)})


async def blocking(request: Request) -> JSONResponse:
    run = client.start(quick.name, {"n": int(request.query_params["n"])})  # blocks the loop
    return JSONResponse({"id": run.id, "status": client.get_run(run.id).status})


async def waited(request: Request) -> JSONResponse:
    record = await aio.wait(request.path_params["run_id"], 60)
    return JSONResponse({"id": record.id, "status": record.status, "result": record.result})


async def lag(request: Request) -> JSONResponse:
    if request.method == "POST":
        lags.clear()
        return JSONResponse({})
    seen = sorted(lags)
    if not seen:
        return JSONResponse({"samples": 0})
    return JSONResponse(
        {
            "samples": len(seen),
            "median": statistics.median(seen),
            "p99": seen[min(len(seen) - 1, int(len(seen) * 0.99))],
            "max": seen[-1],
            "threads": aio.threads(),
        }
    )


app = Starlette(
    routes=[
        Route("/orders", orders, methods=["POST"]),
        Route("/blocking", blocking, methods=["POST"]),
        Route("/wait/{run_id:str}", waited),
        Route("/lag", lag, methods=["GET", "POST"]),
    ],
    lifespan=lifespan,
)
