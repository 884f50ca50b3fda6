"""The training-loop meter both trainer callbacks share: sessions over windows of steps (or an
epoch) and over each evaluation, their figures as log entries, leaks and release-order
violations warned once per holder (or call site)."""

from __future__ import annotations

import importlib.util
import os
import re
import sys
import warnings
from collections.abc import Sequence
from dataclasses import replace
from types import FrameType
from typing import Any, Literal

import torch

from vramguard.core._errors import InvalidArgument, LeakError, LeakWarning, ReleaseOrderWarning
from vramguard.core._records import Leak, LeakGroup, Leaks, SessionReport
from vramguard.core._session import GpuSession
from vramguard.core._sizes import SizeLike, format_size, parse_size
from vramguard.probes import DeviceLike, resolve_device

Every = Literal["epoch", "step"] | int
LoopLeaks = Literal["warn", "raise", "ignore"]


_PLACE = re.compile(r" in (?:suspended )?([\w.<>]+)\(\) at (\S+?):\d+")


def _package_dir(name: str) -> str:
    """The folder of an installed package (with a trailing separator), "" when it is not installed."""
    try:
        spec = importlib.util.find_spec(name)
    except (ImportError, ValueError):
        return ""
    locations = list(spec.submodule_search_locations or ()) if spec is not None else []
    return os.path.join(os.path.abspath(locations[0]), "") if locations else ""


def check_every(every: object) -> Every:
    if every in ("epoch", "step"):
        return every
    if isinstance(every, int) and not isinstance(every, bool) and every >= 1:
        return every
    raise InvalidArgument("every", every, '"epoch", "step" or a number of steps (an int >= 1)')


def model_device(model: object) -> torch.device | None:
    """The device of a model's first parameter (None without parameters)."""
    if isinstance(model, torch.nn.Module):
        for parameter in model.parameters():
            return parameter.device
    return None


class LoopMeter:
    """Sessions around a training loop's windows and its evaluations.

    The training window's session keeps what the loop legitimately carries from step to step
    (the model with its gradients, the optimizer's state, the scheduler): a leak is anything
    else the window created that survived it (outputs appended to a list, a growing cache).
    """

    def __init__(
        self,
        every: Every,
        leaks: LoopLeaks,
        max_peak: SizeLike | None,
        device: DeviceLike | None,
        leak_tolerance: SizeLike,
        loop_packages: Sequence[str] = (),
    ) -> None:
        self.every = check_every(every)
        # A local of the framework's own loop (the last step's loss, its grad norm, the prefetched
        # batch) is carried from step to step by design: not a leak of the user's. Not ``self``:
        # the trainer's attributes hold the user's callbacks.
        self._loop_dirs = tuple(_package_dir(name) for name in loop_packages)
        if leaks not in ("warn", "raise", "ignore"):
            raise InvalidArgument("leaks", leaks, ("warn", "raise", "ignore"))
        self.leaks: LoopLeaks = leaks
        self.max_peak_bytes = None if max_peak is None else parse_size(max_peak, argument="max_peak")
        self.leak_tolerance_bytes = parse_size(leak_tolerance, argument="leak_tolerance")
        self.device_option = device
        self.device: torch.device | None = None if device in (None, "auto") else resolve_device(device)
        self.train: GpuSession | None = None
        self.eval: GpuSession | None = None
        self.train_report: SessionReport | None = None
        self.eval_report: SessionReport | None = None
        self.pending: dict[str, float] = {}
        self.warned: set[str] = set()

    # -- devices and windows -------------------------------------------------------------------
    def bind(self, model: object) -> None:
        """Measure the model's device when none was given."""
        if self.device is None:
            self.device = model_device(model) or resolve_device("auto")

    def _session(self, name: str) -> GpuSession:
        if self.device is None:
            self.device = resolve_device("auto")
        # The session's own policy ignores leaks: the meter judges them once per holder.
        return GpuSession(name, device=self.device, leaks="ignore", max_peak=self.max_peak_bytes)

    def window_ends(self, step: int, *, epoch_end: bool) -> bool:
        """Whether the training window closes now (at a step's end, or the epoch's)."""
        if self.every == "epoch":
            return epoch_end
        if self.every == "step":
            return not epoch_end
        return not epoch_end and step % self.every == 0

    def begin_train(self, name: str) -> None:
        if self.train is None:
            self.train = self._session(name)
            self.train.__enter__()

    def end_train(self, carried: tuple[object, ...]) -> SessionReport | None:
        """Close the training window, keeping what the loop carries; its figures go pending."""
        session, self.train = self.train, None
        if session is None:
            return None
        for obj in carried:
            if obj is not None:
                session.keep(obj)
        _exit_quietly(session)
        report = session.report
        assert report is not None
        self.train_report = report
        self.pending.update(self.figures(report, "vram"))
        self.judge(report)
        return report

    def begin_eval(self, name: str = "evaluate") -> None:
        if self.eval is None:
            self.eval = self._session(name)
            self.eval.__enter__()

    def end_eval(self, carried: tuple[object, ...], prefix: str = "eval") -> dict[str, float]:
        """Close the evaluation's session; its figures (``eval_vram_*``)."""
        session, self.eval = self.eval, None
        if session is None:
            return {}
        for obj in carried:
            if obj is not None:
                session.keep(obj)
        _exit_quietly(session)
        report = session.report
        assert report is not None
        self.eval_report = report
        self.judge(report)
        return self.figures(report, f"{prefix}_vram")

    def abort(self) -> None:
        """Close whatever is open without judging (the loop ended early or raised)."""
        for attribute in ("eval", "train"):
            session = getattr(self, attribute)
            setattr(self, attribute, None)
            if session is not None and session.active:
                session.options = replace(session.options, leaks="ignore", max_peak_bytes=None)
                session.__exit__(None, None, None)

    def take_pending(self) -> dict[str, float]:
        pending, self.pending = self.pending, {}
        return pending

    # -- judging ----------------------------------------------------------------------------
    def user_leaks(self, report: SessionReport) -> tuple[Leak, ...]:
        """The report's leaks but those held only by the framework loop's own locals: a holder
        ``local 'x' ... in Q() at F:L`` (not ``self``) whose root frame is one of the framework's
        frames on the stack now (the callbacks run inside its loop)."""
        dirs = tuple(d for d in self._loop_dirs if d)
        if not dirs:
            return tuple(report.leaks)
        frames: set[tuple[str, str]] = set()
        frame: FrameType | None = sys._getframe(1)
        while frame is not None:
            if frame.f_code.co_filename.startswith(dirs):
                name = getattr(frame.f_code, "co_qualname", frame.f_code.co_name)
                frames.add((name, os.path.basename(frame.f_code.co_filename)))
            frame = frame.f_back
        del frame

        def loop_local(holder: str) -> bool:
            if not holder.startswith("local '") or "local 'self'" in holder:
                return False
            places = _PLACE.findall(holder)
            return bool(places) and (places[-1][0], os.path.basename(places[-1][1])) in frames

        return tuple(leak for leak in report.leaks if not leak.holders or not all(map(loop_local, leak.holders)))

    def leaked_bytes(self, report: SessionReport) -> int | None:
        """The leak figure without the loop's own locals (the allocator's figure without the census)."""
        if report.leaked_bytes is None or not report.leaks:
            return report.leaked_bytes
        return sum(leak.nbytes for leak in self.user_leaks(report))

    def figures(self, report: SessionReport, prefix: str) -> dict[str, float]:
        values = figures(report, prefix)
        leaked = self.leaked_bytes(report)
        if leaked is not None:
            values[f"{prefix}_leaked_bytes"] = leaked
        return values

    def judge(self, report: SessionReport) -> None:
        """Warn (or raise) for a leak above the tolerance, once per holder, and for each new
        release-order violation, once per call site."""
        leaked = self.leaked_bytes(report) or 0
        if self.leaks != "ignore" and leaked > self.leak_tolerance_bytes:
            found = Leaks(self.user_leaks(report)).groups
            groups = [g for g in found if g.holder not in self.warned]
            if self.leaks == "raise":
                held = "; ".join(_line(g) for g in found)
                raise LeakError(f"training loop session {report.name!r} leaked {format_size(leaked)}: {held}", report)
            if groups or (not found and "" not in self.warned):
                self.warned.update(g.holder for g in groups)
                if not found:
                    self.warned.add("")
                held = "; ".join(_line(g) for g in groups) or "census off: no holder named"
                message = (
                    f"training loop session {report.name!r} leaked {format_size(leaked)}: {held} "
                    "(each holder is warned once)"
                )
                warnings.warn(LeakWarning(message), stacklevel=3)
        for violation in report.order_violations:
            key = f"order:{violation.call_site}"
            if key not in self.warned:
                self.warned.add(key)
                message = f"training loop session {report.name!r}: {violation}. Drop references before emptying"
                warnings.warn(ReleaseOrderWarning(message), stacklevel=3)


def _exit_quietly(session: GpuSession) -> None:
    """Exit the window's session without its own release-order warning: the meter warns once
    per call site, not at every window."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ReleaseOrderWarning)
        session.__exit__(None, None, None)


def _line(group: LeakGroup) -> str:
    return group.lines()[0].removeprefix("leak: ")


def figures(report: SessionReport, prefix: str) -> dict[str, float]:
    """A report's figures as log entries: ``{prefix}_peak_bytes`` (the peak above the start),
    ``_peak_allocated_bytes``, ``_reclaimed_bytes``, ``_leaked_bytes``, ``_release_s``; a figure
    that could not be read is left out, never logged as 0."""
    values: dict[str, Any] = {
        "peak_bytes": report.peak_increase_bytes,
        "peak_allocated_bytes": report.peak_allocated_bytes,
        "reclaimed_bytes": report.reclaimed_bytes,
        "leaked_bytes": report.leaked_bytes,
        "release_s": sum(step.duration_s for step in report.release_steps),
    }
    return {f"{prefix}_{key}": value for key, value in values.items() if value is not None}
