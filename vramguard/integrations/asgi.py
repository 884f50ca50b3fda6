"""``SessionMiddleware``: each HTTP request of an ASGI app (Starlette, FastAPI, any) in a session.

    app = SessionMiddleware(app, device="cuda")
    collector = vramguard.metrics.PrometheusCollector(["cuda"])   # counts the requests' sessions

A request that leaks is logged (logger ``vramguard.integrations.asgi``, warning) with the leak's
holders; every report goes to ``on_report`` and to the report listeners (the Prometheus
collector). Requests served concurrently share the device, so their figures are process-wide
and their reports say so (``concurrent``). Pure ASGI: no framework is imported.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any, Literal

from vramguard.core._errors import InvalidArgument, LeakWarning
from vramguard.core._records import SessionReport
from vramguard.core._session import GpuSession
from vramguard.core._sizes import SizeLike, format_size, parse_size
from vramguard.probes import DeviceLike, resolve_device

__all__ = ["SessionMiddleware"]

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]
LeakAction = Literal["log", "warn", "ignore"]

_log = logging.getLogger(__name__)


def request_name(scope: Scope) -> str:
    """The default session name: ``"GET /items"`` (the method and the path, without the query).

    Paths with ids in them make many names (and Prometheus series): pass ``name=`` to map them."""
    return f"{scope.get('method', 'HTTP')} {scope.get('path', '/')}"


class SessionMiddleware:
    """Run each HTTP request in a :func:`vramguard.gpu_session`.

    ``device``: the device measured. ``name``: a function of the ASGI scope giving the session's
    name (default :func:`request_name`). ``leaks``: a leak above ``leak_tolerance`` is logged
    ("log", the default: a server must not raise for it), also warned as a LeakWarning ("warn"),
    or let be ("ignore"). ``census``: name what leaked and who holds it (off: only the allocator's
    figure). ``on_report``: called with each request's report. Lifespan and websocket scopes pass
    through unmeasured.
    """

    def __init__(
        self,
        app: ASGIApp,
        *,
        device: DeviceLike | None = "auto",
        name: Callable[[Scope], str] | None = None,
        leaks: LeakAction = "log",
        leak_tolerance: SizeLike = 0,
        census: bool = True,
        on_report: Callable[[SessionReport], None] | None = None,
    ) -> None:
        if not callable(app):
            raise InvalidArgument("app", app, "an ASGI application (async callable(scope, receive, send))")
        if leaks not in ("log", "warn", "ignore"):
            raise InvalidArgument("leaks", leaks, ("log", "warn", "ignore"))
        if name is not None and not callable(name):
            raise InvalidArgument("name", name, "a function of the ASGI scope returning the session's name")
        if not isinstance(census, bool):
            raise InvalidArgument("census", census, "True or False")
        self.app = app
        self.device = resolve_device(device)
        self.name = name or request_name
        self.leaks: LeakAction = leaks
        self.leak_tolerance_bytes = parse_size(leak_tolerance, argument="leak_tolerance")
        self.census = census
        self.on_report = on_report

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope.get("type") != "http":
            await self.app(scope, receive, send)
            return
        # The session itself ignores leaks: the middleware reports them, with the request's context.
        session = GpuSession(self.name(scope), device=self.device, leaks="ignore", leak_tolerance=0, census=self.census)
        async with session:
            await self.app(scope, receive, send)
        report = session.report
        assert report is not None
        self._judge(report)
        if self.on_report is not None:
            self.on_report(report)

    def _judge(self, report: SessionReport) -> None:
        leaked = report.leaked_bytes or 0
        if self.leaks == "ignore" or leaked <= self.leak_tolerance_bytes:
            return
        lines = _leak_lines(report) if report.leaks else []
        held = "; ".join(line.strip() for line in lines) or "no tensor named (census off)"
        message = f"request {report.name!r} leaked {format_size(leaked)}: {held}"
        _log.warning(message)
        if self.leaks == "warn":
            warnings.warn(LeakWarning(f"{message}\n{report}"), stacklevel=2)


def _leak_lines(report: SessionReport) -> list[str]:
    from vramguard.core._records import Leaks

    return Leaks(report.leaks).lines()[:5]
