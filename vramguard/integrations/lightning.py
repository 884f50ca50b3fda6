"""``VramGuardCallback`` for Lightning (``lightning.pytorch``, or ``pytorch_lightning``).

    trainer = Trainer(callbacks=[VramGuardCallback(every="step")])

The same as the Hugging Face callback (:mod:`vramguard.integrations.trainer`): a session around
each step, each ``N`` steps or each epoch, its figures logged through ``LightningModule.log``
(``vram_peak_bytes``, ``vram_reclaimed_bytes``, ``vram_leaked_bytes``, ...: every logger the
Trainer has receives them), each validation in a session of its own (``val_vram_*``), leaks and
release-order violations warned once per holder. Needs the ``lightning`` extra.
"""

from __future__ import annotations

from typing import Any

from vramguard.core._errors import MissingDependency
from vramguard.core._records import SessionReport
from vramguard.core._sizes import SizeLike
from vramguard.integrations._loop import Every, LoopLeaks, LoopMeter
from vramguard.probes import DeviceLike

Callback: Any
try:
    from lightning.pytorch import Callback
except ImportError:
    try:
        from pytorch_lightning import Callback
    except ImportError as error:
        raise MissingDependency("pytorch-lightning", "lightning", "vramguard.integrations.lightning") from error

__all__ = ["VramGuardCallback"]

_LOOP_PACKAGES = ("lightning", "pytorch_lightning", "lightning_fabric")


class VramGuardCallback(Callback):  # type: ignore[misc]
    """Measure a Lightning Trainer's steps or epochs and its validation in vramguard sessions.

    ``every``: "step", "epoch" or a number of steps per session. ``leaks``: "warn" (each holder
    once), "raise" (LeakError stops training) or "ignore". ``max_peak``: a size a window's peak
    may not pass (PeakExceeded). ``device``: default, the module's. The last reports are
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
        super().__init__()
        self.meter = LoopMeter(every, leaks, max_peak, device, leak_tolerance, loop_packages=_LOOP_PACKAGES)
        self._steps = 0

    @property
    def train_report(self) -> SessionReport | None:
        return self.meter.train_report

    @property
    def eval_report(self) -> SessionReport | None:
        return self.meter.eval_report

    # -- training -------------------------------------------------------------------------------
    def on_fit_start(self, trainer: Any, pl_module: Any) -> None:
        self.meter.bind(pl_module)

    def on_train_epoch_start(self, trainer: Any, pl_module: Any) -> None:
        if self.meter.every == "epoch":
            self.meter.begin_train(f"epoch {trainer.current_epoch + 1}")

    def on_train_batch_start(self, trainer: Any, pl_module: Any, batch: Any, batch_idx: int) -> None:
        if self.meter.every != "epoch":
            self.meter.begin_train(f"step {trainer.global_step + 1}")

    def on_train_batch_end(self, trainer: Any, pl_module: Any, outputs: Any, batch: Any, batch_idx: int) -> None:
        self._steps += 1
        if self.meter.window_ends(self._steps, epoch_end=False):
            self.meter.end_train(_carried(trainer, pl_module, outputs, batch))
            self._log(pl_module, self.meter.take_pending(), on_step=True)

    def on_train_epoch_end(self, trainer: Any, pl_module: Any) -> None:
        if self.meter.window_ends(self._steps, epoch_end=True):
            self.meter.end_train(_carried(trainer, pl_module))
            self._log(pl_module, self.meter.take_pending(), on_step=False)

    def on_train_end(self, trainer: Any, pl_module: Any) -> None:
        if self.meter.train is not None:  # a last, partial window of N steps
            self.meter.end_train(_carried(trainer, pl_module))

    def on_exception(self, trainer: Any, pl_module: Any, exception: BaseException) -> None:
        self.meter.abort()

    # -- validation -----------------------------------------------------------------------------
    def on_validation_epoch_start(self, trainer: Any, pl_module: Any) -> None:
        self.meter.begin_eval("validation")

    def on_validation_epoch_end(self, trainer: Any, pl_module: Any) -> None:
        figures = self.meter.end_eval(_carried(trainer, pl_module), prefix="val")
        if not trainer.sanity_checking:
            self._log(pl_module, figures, on_step=False)

    @staticmethod
    def _log(pl_module: Any, figures: dict[str, float], *, on_step: bool) -> None:
        for key, value in figures.items():
            pl_module.log(key, float(value), on_step=on_step, on_epoch=not on_step, reduce_fx="max")


def _carried(trainer: Any, pl_module: Any, *more: Any) -> tuple[object, ...]:
    """What the loop carries between steps: the module's parameters, gradients and buffers, the
    optimizers (their state), the schedulers, the logged results and metrics; the step's outputs
    and batch, which Lightning hands to the hooks after the step. Never the module or the loops
    themselves: they refer back to the Trainer, whose callbacks would then all be kept."""
    parameters = list(pl_module.parameters())
    tensors = [*parameters, *(p.grad for p in parameters if p.grad is not None), *pl_module.buffers()]
    metrics = (getattr(trainer, name, None) for name in ("_results", "callback_metrics", "logged_metrics"))
    return (tensors, trainer.optimizers, trainer.lr_scheduler_configs, *metrics, *more)
