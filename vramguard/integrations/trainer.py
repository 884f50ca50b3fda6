"""``VramGuardCallback`` for the Hugging Face ``transformers.Trainer``.

    trainer = Trainer(model, args, train_dataset=..., callbacks=[VramGuardCallback(every="step")])

A session around each step (``every="step"``), each ``N`` steps, or each epoch; its figures go
into the Trainer's next log entry (``vram_peak_bytes``, ``vram_reclaimed_bytes``,
``vram_leaked_bytes``, ...), so ``report_to`` carries them to TensorBoard or W&B. Each evaluation
runs in a session of its own and logs ``eval_vram_*`` with its metrics. Leaks (what a window
created that survived it, beyond the model, its gradients and the optimizer's state) and
release-order violations are warned once per holder, with the holder named. Needs the
``trainer`` extra.
"""

from __future__ import annotations

import sys
from typing import Any

from vramguard.core._errors import MissingDependency
from vramguard.core._records import SessionReport
from vramguard.core._sizes import SizeLike
from vramguard.integrations._loop import Every, LoopLeaks, LoopMeter
from vramguard.probes import DeviceLike

try:
    from transformers import TrainerCallback
    from transformers.trainer_callback import CallbackHandler
except ImportError as error:  # pragma: no cover - the extra is installed in the test environment
    raise MissingDependency("transformers", "trainer", "vramguard.integrations.trainer") from error

__all__ = ["VramGuardCallback"]


class _LogInjector(TrainerCallback):
    """Put first in the Trainer's callbacks, so that the reporting callbacks (TensorBoard, W&B)
    that run before user callbacks see vramguard's figures in the log entry."""

    def __init__(self, owner: VramGuardCallback) -> None:
        self.owner = owner

    def on_log(self, args: Any, state: Any, control: Any, logs: dict[str, float] | None = None, **kwargs: Any) -> None:
        if logs is None:
            return
        added = self.owner._figures_for(logs, kwargs)
        if added:
            logs.update(added)
            # Trainer.log appended a copy of the entry to the history before calling back.
            if state.log_history and all(state.log_history[-1].get(k) == v for k, v in logs.items() if k not in added):
                state.log_history[-1].update(added)


class VramGuardCallback(TrainerCallback):
    """Measure the Trainer's steps or epochs and its evaluations in vramguard sessions.

    ``every``: "step", "epoch" or a number of steps per session. ``leaks``: "warn" (each holder
    once), "raise" (LeakError stops training) or "ignore". ``max_peak``: a size a window's peak
    may not pass (PeakExceeded). ``device``: default, the model's. The last reports are
    ``train_report`` and ``eval_report``.
    """

    def __init__(
        self,
        every: Every = "epoch",
        leaks: LoopLeaks = "warn",
        max_peak: SizeLike | None = None,
        *,
        device: DeviceLike | None = None,
        leak_tolerance: SizeLike = 0,
    ) -> None:
        self.meter = LoopMeter(
            every, leaks, max_peak, device, leak_tolerance, loop_packages=("transformers", "accelerate")
        )
        self._injector = _LogInjector(self)
        self._eval_figures: dict[str, float] = {}

    @property
    def train_report(self) -> SessionReport | None:
        return self.meter.train_report

    @property
    def eval_report(self) -> SessionReport | None:
        return self.meter.eval_report

    # -- placing the injector ---------------------------------------------------------------
    def _install_injector(self) -> None:
        """Put the injector first among the handler's callbacks (the caller of this event).

        The handler is found as the calling frame's ``self``: a callback is not given the
        Trainer. Inserting before us while the handler iterates calls us again for this event;
        the events below are idempotent.
        """
        frame = sys._getframe(2)
        handler = frame.f_locals.get("self") if frame is not None else None
        if isinstance(handler, CallbackHandler) and self._injector not in handler.callbacks:
            handler.callbacks.insert(0, self._injector)

    # -- training -------------------------------------------------------------------------------
    def on_train_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        self._install_injector()
        self.meter.bind(kwargs.get("model"))

    def on_epoch_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        if self.meter.every == "epoch":
            self.meter.begin_train(f"epoch {int(state.epoch or 0) + 1}")

    def on_step_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        if self.meter.every != "epoch":
            self.meter.begin_train(f"step {state.global_step + 1}")

    def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        if self.meter.window_ends(state.global_step, epoch_end=False):
            self.meter.end_train(_carried(kwargs))
        if control.should_evaluate:
            self.meter.begin_eval()

    def on_epoch_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        if self.meter.window_ends(state.global_step, epoch_end=True):
            self.meter.end_train(_carried(kwargs))
        if control.should_evaluate:
            self.meter.begin_eval()

    def on_train_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        if self.meter.train is not None:  # a last, partial window of N steps
            self.meter.end_train(_carried(kwargs))

    # -- evaluation -------------------------------------------------------------------------
    def on_prediction_step(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        # trainer.evaluate() called directly: no step end announced it; measured from its first batch.
        self.meter.begin_eval()

    def on_evaluate(
        self, args: Any, state: Any, control: Any, metrics: dict[str, float] | None = None, **kwargs: Any
    ) -> None:
        added = self.meter.end_eval(_carried(kwargs)) or self._eval_figures
        self._eval_figures = {}
        if metrics is not None:
            metrics.update(added)

    def _figures_for(self, logs: dict[str, float], kwargs: dict[str, Any]) -> dict[str, float]:
        """What goes into this log entry: an evaluation's figures into its metrics' entry (its
        session ends here, before the entry is written), else the training figures pending."""
        if self.meter.eval is not None and any(key.startswith("eval_") for key in logs):
            self._eval_figures = self.meter.end_eval(_carried(kwargs))
            return self._eval_figures
        return self.meter.take_pending()


def _carried(kwargs: dict[str, Any]) -> tuple[object, ...]:
    """What the loop carries between steps: the model (its gradients), the optimizer (its
    state), the scheduler."""
    return (kwargs.get("model"), kwargs.get("optimizer"), kwargs.get("lr_scheduler"))
