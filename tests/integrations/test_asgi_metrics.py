"""The ASGI middleware and the Prometheus collector on a real Starlette app under httpx's ASGI
transport: 200 requests, one of which leaks."""

from __future__ import annotations

import asyncio
import gc
import logging
from collections.abc import Iterator

import httpx
import pytest
import torch
from prometheus_client import CollectorRegistry, generate_latest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

import vramguard
from vramguard.core import _hooks
from vramguard.integrations.asgi import SessionMiddleware
from vramguard.metrics import PrometheusCollector

CACHE: list[torch.Tensor] = []
MIB = 2**20


async def infer(request: Request) -> JSONResponse:
    x = torch.ones(64, 1024) * 2  # 256 KiB that the request drops
    return JSONResponse({"sum": float(x.sum())})


async def leaky(request: Request) -> JSONResponse:
    y = torch.ones(MIB // 4)  # 1 MiB kept by a module-level cache
    CACHE.append(y)
    return JSONResponse({"cached": len(CACHE)})


@pytest.fixture
def registry() -> Iterator[CollectorRegistry]:
    yield CollectorRegistry()
    CACHE.clear()


def value(registry: CollectorRegistry, name: str, **labels: str) -> float | None:
    return registry.get_sample_value(name, labels)


@pytest.mark.slow
def test_200_requests_one_leaking(registry: CollectorRegistry, caplog: pytest.LogCaptureFixture) -> None:
    collector = PrometheusCollector(["cpu"], registry=registry)
    reports: list[vramguard.SessionReport] = []
    app = SessionMiddleware(
        Starlette(routes=[Route("/infer", infer), Route("/leak", leaky)]), device="cpu", on_report=reports.append
    )

    async def serve() -> list[int]:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            codes = []
            for i in range(200):
                response = await client.get("/leak" if i == 100 else "/infer")
                codes.append(response.status_code)
            return codes

    with caplog.at_level(logging.WARNING, logger="vramguard"):
        codes = asyncio.run(serve())
    assert codes == [200] * 200
    assert len(reports) == 200
    assert value(registry, "vramguard_sessions_total", session="GET /infer", device="cpu") == 199
    assert value(registry, "vramguard_sessions_total", session="GET /leak", device="cpu") == 1
    assert value(registry, "vramguard_leaking_sessions_total", session="GET /leak", device="cpu") == 1
    assert value(registry, "vramguard_leaking_sessions_total", session="GET /infer", device="cpu") == 0
    assert value(registry, "vramguard_leaked_bytes_total", session="GET /leak", device="cpu") == MIB
    assert value(registry, "vramguard_leaked_bytes_total", session="GET /infer", device="cpu") == 0
    release_s = value(registry, "vramguard_release_seconds_total", session="GET /infer", device="cpu")
    assert release_s is not None and release_s > 0
    # The leak is named, with its holder, once.
    warned = [r.getMessage() for r in caplog.records if r.name == "vramguard.integrations.asgi"]
    assert len(warned) == 1, warned
    assert "request 'GET /leak' leaked 1.00 MiB" in warned[0]
    assert f"global {__name__}.CACHE" in warned[0]
    leaking = [r for r in reports if r.leaked_bytes]
    assert [r.name for r in leaking] == ["GET /leak"]
    collector.close()


def test_device_gauges_are_read_at_each_scrape(registry: CollectorRegistry) -> None:
    collector = PrometheusCollector(["cpu"], registry=registry)
    try:
        before = value(registry, "vramguard_allocated_bytes", device="cpu")
        held = torch.ones(16 * MIB)  # 64 MiB
        during = value(registry, "vramguard_allocated_bytes", device="cpu")
        assert before is not None and during is not None
        assert during - before >= 60 * MIB
        del held
        peak = value(registry, "vramguard_peak_allocated_bytes", device="cpu")
        assert peak is not None and peak >= during
        text = generate_latest(registry).decode()
        assert 'vramguard_reserved_bytes{device="cpu"}' in text
        # NVML is CUDA only: on the host it is absent, not a fake 0.
        assert "vramguard_process_nvml_bytes{" not in text
    finally:
        collector.close()


LEDGER_HELD: torch.Tensor | None = None


def test_the_ledger_is_one_gauge_per_category_read_at_each_scrape(registry: CollectorRegistry) -> None:
    global LEDGER_HELD
    plain = PrometheusCollector(["cpu"], registry=None)
    assert "vramguard_ledger_bytes" not in {family.name for family in plain.collect()}, "off by default"
    plain.close()
    collector = PrometheusCollector(["cpu"], registry=registry, ledger=True)
    try:
        LEDGER_HELD = torch.ones(16 * MIB)  # 64 MiB held by a global
        gc.collect()
        held = _ledger_samples(registry)
        LEDGER_HELD = None
        gc.collect()
        dropped = _ledger_samples(registry)
        assert held["tensors"] - dropped.get("tensors", 0) == 64 * MIB  # no tensor line when none is held
        assert {"tensors", "code", "malloc in use", "residual"} <= set(held)
        assert list(held)[-1] == "residual"
        text = generate_latest(registry).decode()
        assert 'vramguard_ledger_bytes{category="residual",device="cpu"}' in text
    finally:
        LEDGER_HELD = None
        collector.close()


def _ledger_samples(registry: CollectorRegistry) -> dict[str, float]:
    """One scrape's ledger samples for the host, by category, in the order they were exported."""
    found: dict[str, float] = {}
    for family in registry.collect():
        if family.name == "vramguard_ledger_bytes":
            for sample in family.samples:
                assert sample.labels["device"] == "cpu"
                found[sample.labels["category"]] = sample.value
    return found


def test_close_stops_counting_and_unregisters(registry: CollectorRegistry) -> None:
    collector = PrometheusCollector(["cpu"], registry=registry)
    with vramguard.gpu_session("counted", device="cpu"):
        pass
    collector.close()
    collector.close()
    assert collector.observe not in _hooks.report_listeners
    with vramguard.gpu_session("uncounted", device="cpu"):
        pass
    assert value(registry, "vramguard_sessions_total", session="counted", device="cpu") is None, "unregistered"
    assert ("uncounted", "cpu") not in collector._totals
    assert collector._totals[("counted", "cpu")].sessions == 1


def test_a_leak_that_raises_is_still_counted(registry: CollectorRegistry) -> None:
    collector = PrometheusCollector(["cpu"], registry=registry)
    try:
        with pytest.raises(vramguard.LeakError), vramguard.gpu_session("raising", device="cpu", leaks="raise"):
            CACHE.append(torch.ones(MIB // 4))
        assert value(registry, "vramguard_leaked_bytes_total", session="raising", device="cpu") == MIB
    finally:
        collector.close()


def test_bad_arguments() -> None:
    with pytest.raises(vramguard.InvalidArgument, match="devices"):
        PrometheusCollector("cpu", registry=None)  # type: ignore[arg-type]
    with pytest.raises(vramguard.InvalidArgument, match="ledger"):
        PrometheusCollector(["cpu"], registry=None, ledger="yes")  # type: ignore[arg-type]
    with pytest.raises(vramguard.InvalidArgument, match="leaks"):
        SessionMiddleware(infer, leaks="raise")  # type: ignore[arg-type]


def test_other_scopes_pass_through_unmeasured() -> None:
    reports: list[vramguard.SessionReport] = []
    seen: list[str] = []

    async def app(scope: dict[str, object], receive: object, send: object) -> None:
        seen.append(str(scope["type"]))

    middleware = SessionMiddleware(app, device="cpu", on_report=reports.append)  # type: ignore[arg-type]
    asyncio.run(middleware({"type": "lifespan"}, None, None))  # type: ignore[arg-type]
    assert seen == ["lifespan"] and reports == []


@pytest.mark.gpu
def test_cuda_gauges_and_nvml_process_memory(registry: CollectorRegistry) -> None:
    """The real twin on a GPU: the allocator's figures and NVML's view of this process."""
    collector = PrometheusCollector(["cuda:0"], registry=registry)
    try:
        held = torch.empty(256 * MIB, dtype=torch.uint8, device="cuda:0")
        allocated = value(registry, "vramguard_allocated_bytes", device="cuda:0")
        assert allocated is not None and allocated >= 256 * MIB
        nvml = value(registry, "vramguard_process_nvml_bytes", device="cuda:0")
        reserved = value(registry, "vramguard_reserved_bytes", device="cuda:0")
        if nvml is not None:  # NVML sees the process (not always inside a container)
            assert reserved is not None and nvml >= reserved
        with vramguard.gpu_session("gpu", device="cuda:0"):
            torch.ones(64 * MIB // 4, device="cuda:0").sum()
        peak = value(registry, "vramguard_peak_allocated_bytes", device="cuda:0")
        assert peak is not None and peak >= allocated
        assert value(registry, "vramguard_sessions_total", session="gpu", device="cuda:0") == 1
        del held
    finally:
        collector.close()
