"""Prometheus metrics: each device's memory, read at every scrape, and counters of the sessions
that finished in this process, labelled by session name.

    collector = PrometheusCollector(["cuda:0"])   # registered with prometheus_client's REGISTRY
    prometheus_client.start_http_server(9400)

prometheus_client comes with the ``metrics`` extra and is imported when a collector is made.
"""

from __future__ import annotations

import importlib
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch

from vramguard.core import _hooks
from vramguard.core._errors import InvalidArgument, MissingDependency
from vramguard.core._records import SessionReport
from vramguard.probes import DeviceLike, MemorySnapshot, resolve_device, take

if TYPE_CHECKING:
    from prometheus_client.registry import Collector, CollectorRegistry

__all__ = ["PrometheusCollector"]

_DEFAULT: Any = object()


def _require_prometheus() -> None:
    try:
        importlib.import_module("prometheus_client")
    except ImportError as error:
        raise MissingDependency("prometheus_client", "metrics", "vramguard.metrics.PrometheusCollector") from error


@dataclass
class _Totals:
    """What the finished sessions of one (name, device) added up to."""

    sessions: int = 0
    leaking_sessions: int = 0
    leaked_bytes: int = 0
    release_s: float = 0.0
    duration_s: float = 0.0
    last_peak_increase_bytes: int | None = None


# (metric suffix, documentation, snapshot field): the device gauges, read at each scrape.
_DEVICE_GAUGES = (
    ("allocated_bytes", "Bytes handed out to live objects (CUDA allocator; host: malloc in use)", "allocated_bytes"),
    (
        "reserved_bytes",
        "Bytes this process holds from the device (CUDA segments; host: resident anon)",
        "reserved_bytes",
    ),
    ("process_nvml_bytes", "This process's memory on the GPU as NVML reports it", "process_used_bytes"),
    ("device_used_bytes", "The whole GPU's used memory (NVML)", "device_used_bytes"),
)


class PrometheusCollector:
    """A prometheus_client collector of vramguard's figures.

    Per device (label ``device``): ``vramguard_allocated_bytes``, ``vramguard_reserved_bytes``,
    ``vramguard_peak_allocated_bytes`` (the highest seen since the collector started: torch's own
    counter is reset by every session), ``vramguard_process_nvml_bytes`` and
    ``vramguard_device_used_bytes`` (NVML; absent where it cannot be read, never a fake 0).
    Per session name and device (labels ``session``, ``device``): the counters
    ``vramguard_sessions_total``, ``vramguard_leaking_sessions_total``,
    ``vramguard_leaked_bytes_total``, ``vramguard_release_seconds_total``,
    ``vramguard_session_seconds_total`` and the gauge ``vramguard_session_peak_increase_bytes``
    (the last session's). Every session that finishes in the process is counted, from the moment
    the collector exists until :meth:`close`.

    ``devices``: the devices to read (default: the "auto" device). ``registry``: where to
    register (default prometheus_client's ``REGISTRY``; None registers nowhere).

    ``ledger=True`` adds ``vramguard_ledger_bytes`` (labels ``device``, ``category``): the
    memory ledger (:func:`vramguard.explain`) taken at each scrape, one sample per category
    ("tensors", "cached free", "context", "malloc free", ..., "residual", which may be
    negative); a device's samples add up to its total. It costs a heap pass per scrape (about
    0.1 s in a small process, seconds at millions of objects), hence off by default.
    """

    def __init__(
        self,
        devices: Sequence[DeviceLike] | None = None,
        *,
        registry: CollectorRegistry | None = _DEFAULT,
        namespace: str = "vramguard",
        ledger: bool = False,
    ) -> None:
        _require_prometheus()
        if not isinstance(namespace, str) or not namespace.isidentifier():
            raise InvalidArgument("namespace", namespace, "a metric name prefix such as 'vramguard'")
        if devices is not None and (isinstance(devices, (str, int, torch.device)) or not len(devices)):
            raise InvalidArgument("devices", devices, 'a non-empty list of devices, e.g. ["cuda:0", "cuda:1"]')
        self.devices = tuple(resolve_device(d, argument="devices") for d in (devices or ("auto",)))
        if not isinstance(ledger, bool):
            raise InvalidArgument("ledger", ledger, "True or False")
        self.namespace = namespace
        self.ledger = ledger
        self._lock = threading.Lock()
        self._totals: dict[tuple[str, str], _Totals] = {}
        self._peaks: dict[str, int] = {}
        if registry is _DEFAULT:
            from prometheus_client import REGISTRY

            registry = REGISTRY
        self._registry = registry
        _hooks.report_listeners.append(self.observe)
        if registry is not None:
            try:
                registry.register(self._as_collector())
            except BaseException:
                _hooks.report_listeners.remove(self.observe)
                raise

    def _as_collector(self) -> Collector:
        return self  # structurally a Collector: collect() and describe()

    # -- the sessions ---------------------------------------------------------------------
    def observe(self, report: SessionReport) -> None:
        """Count a finished session (called for every session once the collector exists)."""
        release_s = sum(step.duration_s for step in report.release_steps)
        with self._lock:
            totals = self._totals.setdefault((report.name, report.device), _Totals())
            totals.sessions += 1
            leaked = report.leaked_bytes or 0
            if leaked:
                totals.leaking_sessions += 1
                totals.leaked_bytes += leaked
            totals.release_s += release_s
            totals.duration_s += report.duration_s
            totals.last_peak_increase_bytes = report.peak_increase_bytes
            if report.peak_allocated_bytes is not None:
                self._peaks[report.device] = max(self._peaks.get(report.device, 0), report.peak_allocated_bytes)

    def close(self) -> None:
        """Stop counting sessions and unregister from the registry; idempotent."""
        if self.observe in _hooks.report_listeners:
            _hooks.report_listeners.remove(self.observe)
        registry, self._registry = self._registry, None
        if registry is not None:
            registry.unregister(self._as_collector())

    # -- the prometheus_client protocol ---------------------------------------------------------
    def describe(self) -> list[Any]:
        """The metric families without samples: the registry checks names without reading devices."""
        return list(self._families(read=False))

    def collect(self) -> Iterator[Any]:
        """Read each device now and yield every family."""
        yield from self._families(read=True)

    def _families(self, *, read: bool) -> Iterator[Any]:
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

        prefix = self.namespace
        gauges = [
            (field, GaugeMetricFamily(f"{prefix}_{suffix}", doc, labels=["device"]))
            for suffix, doc, field in _DEVICE_GAUGES
        ]
        peak = GaugeMetricFamily(
            f"{prefix}_peak_allocated_bytes",
            "The highest allocated bytes seen since the collector started (devices and sessions)",
            labels=["device"],
        )
        if read:
            for device in self.devices:
                snap = take(device, nvml=True)
                label = [str(device)]
                for field, family in gauges:
                    value = getattr(snap, field)
                    if value is not None:
                        family.add_metric(label, value)
                value = self._peak(str(device), snap)
                if value is not None:
                    peak.add_metric(label, value)
        yield from (family for _, family in gauges)
        yield peak
        labels = ["session", "device"]
        counters = {
            "sessions": CounterMetricFamily(f"{prefix}_sessions", "Sessions finished", labels=labels),
            "leaking_sessions": CounterMetricFamily(
                f"{prefix}_leaking_sessions", "Sessions that leaked memory", labels=labels
            ),
            "leaked_bytes": CounterMetricFamily(f"{prefix}_leaked_bytes", "Bytes leaked by sessions", labels=labels),
            "release_s": CounterMetricFamily(
                f"{prefix}_release_seconds", "Seconds spent in sessions' ordered releases", labels=labels
            ),
            "duration_s": CounterMetricFamily(f"{prefix}_session_seconds", "Seconds spent in sessions", labels=labels),
        }
        last_peak = GaugeMetricFamily(
            f"{prefix}_session_peak_increase_bytes", "The last session's peak above its start", labels=labels
        )
        if read:
            with self._lock:
                totals = [(key, _Totals(**vars(value))) for key, value in self._totals.items()]
            for (session, where), total in totals:
                for attribute, counter in counters.items():
                    counter.add_metric([session, where], getattr(total, attribute))
                if total.last_peak_increase_bytes is not None:
                    last_peak.add_metric([session, where], total.last_peak_increase_bytes)
        yield from counters.values()
        yield last_peak
        if self.ledger:
            yield self._ledger_family(read=read)

    def _ledger_family(self, *, read: bool) -> Any:
        from prometheus_client.core import GaugeMetricFamily

        from vramguard.ledger._explain import explain

        family = GaugeMetricFamily(
            f"{self.namespace}_ledger_bytes",
            "The memory ledger per category (vramguard.explain): a device's samples add up to its total; "
            "the residual may be negative",
            labels=["device", "category"],
        )
        for device in self.devices if read else ():
            for category, nbytes in explain(device).by_category().items():
                family.add_metric([str(device), category], nbytes)
        return family

    def _peak(self, device: str, snap: MemorySnapshot) -> int | None:
        with self._lock:
            seen = [
                v for v in (self._peaks.get(device), snap.peak_allocated_bytes, snap.allocated_bytes) if v is not None
            ]
            if not seen:
                return None
            self._peaks[device] = max(seen)
            return self._peaks[device]
