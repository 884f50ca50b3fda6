"""VramGuardCallback on a real Lightning Trainer(max_steps=3, accelerator="cpu") with a planted
leak (a callback appending outputs to a list)."""

from __future__ import annotations

import warnings
from typing import Any

import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

import vramguard

pl = pytest.importorskip("pytorch_lightning")

from vramguard.integrations.lightning import VramGuardCallback  # noqa: E402

KEYS = {"vram_peak_bytes", "vram_peak_allocated_bytes", "vram_reclaimed_bytes", "vram_leaked_bytes", "vram_release_s"}


class Tiny(pl.LightningModule):  # type: ignore[misc]
    def __init__(self) -> None:
        super().__init__()
        self.net = torch.nn.Sequential(torch.nn.Linear(32, 64), torch.nn.ReLU(), torch.nn.Linear(64, 1))

    def training_step(self, batch: Any, index: int) -> torch.Tensor:
        x, y = batch
        return torch.nn.functional.mse_loss(self.net(x), y)

    def validation_step(self, batch: Any, index: int) -> None:
        x, y = batch
        self.log("val_loss", torch.nn.functional.mse_loss(self.net(x), y))

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.Adam(self.parameters(), lr=1e-3)


class Hoard(pl.Callback):  # type: ignore[misc]
    """The planted leak: keeps each step's predictions (8 floats, 32 B)."""

    def __init__(self) -> None:
        self.outputs: list[torch.Tensor] = []

    def on_train_batch_end(self, trainer: Any, pl_module: Any, outputs: Any, batch: Any, batch_idx: int) -> None:
        with torch.no_grad():
            self.outputs.append(pl_module.net(batch[0]))


@pytest.mark.slow
def test_steps_logged_validation_apart_and_the_leak_named_once() -> None:
    torch.manual_seed(0)
    data = TensorDataset(torch.randn(32, 32), torch.randn(32, 1))
    hoard, guard = Hoard(), VramGuardCallback(every="step")
    trainer = pl.Trainer(
        max_steps=3,
        accelerator="cpu",
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        val_check_interval=2,
        limit_val_batches=2,
        callbacks=[hoard, guard],
    )
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        trainer.fit(Tiny(), DataLoader(data, batch_size=8), DataLoader(data, batch_size=8))
    assert trainer.global_step == 3
    leaks = [w for w in caught if issubclass(w.category, vramguard.LeakWarning)]
    assert len(leaks) == 1, [str(w.message) for w in leaks]
    message = str(leaks[0].message)
    assert "training loop session 'step 1' leaked 32 B" in message
    assert "local 'hoard'.outputs[0] in test_steps_logged_validation_apart_and_the_leak_named_once()" in message
    metrics = trainer.logged_metrics
    assert set(metrics) >= KEYS, metrics
    assert float(metrics["vram_leaked_bytes"]) == 32
    assert {f"val_{key}" for key in KEYS} <= set(metrics), metrics
    assert float(metrics["val_vram_leaked_bytes"]) == 0, "validation measured on its own; its logged metrics kept"
    assert guard.train_report is not None and guard.train_report.name == "step 3"
    assert guard.eval_report is not None and guard.eval_report.name == "validation"
    assert len(hoard.outputs) == 3


def test_bad_arguments() -> None:
    with pytest.raises(vramguard.InvalidArgument, match="every"):
        VramGuardCallback(every=-2)
    with pytest.raises(vramguard.InvalidArgument, match="leaks"):
        VramGuardCallback(leaks="loud")  # type: ignore[arg-type]
