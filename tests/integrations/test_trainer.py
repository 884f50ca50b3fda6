"""VramGuardCallback on a real transformers.Trainer: a tiny GPT-2 built from a config, trained a
few steps on the CPU, with a planted leak (a callback appending outputs to a list)."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import pytest
import torch

import vramguard

transformers = pytest.importorskip("transformers")

from vramguard.integrations.trainer import VramGuardCallback  # noqa: E402

KEYS = {"vram_peak_bytes", "vram_peak_allocated_bytes", "vram_reclaimed_bytes", "vram_leaked_bytes", "vram_release_s"}


class Hoard(transformers.TrainerCallback):  # type: ignore[misc]
    """The planted leak: keeps each step's logits."""

    def __init__(self) -> None:
        self.outputs: list[torch.Tensor] = []

    def on_step_end(self, args: Any, state: Any, control: Any, model: Any = None, **kwargs: Any) -> None:
        with torch.no_grad():
            self.outputs.append(model(torch.zeros(1, 8, dtype=torch.long)).logits)  # 2 KiB a step


def tiny_trainer(tmp_path: Path, callbacks: list[Any], **options: Any) -> Any:
    torch.manual_seed(0)
    config = transformers.GPT2Config(
        n_layer=1, n_embd=32, n_head=2, vocab_size=64, n_positions=16, bos_token_id=0, eos_token_id=0
    )
    model = transformers.GPT2LMHeadModel(config)
    data = [{"input_ids": torch.randint(0, 64, (8,)), "labels": torch.randint(0, 64, (8,))} for _ in range(16)]
    args = transformers.TrainingArguments(
        output_dir=str(tmp_path),
        max_steps=4,
        per_device_train_batch_size=4,
        per_device_eval_batch_size=4,
        logging_steps=1,
        report_to=[],
        use_cpu=True,
        save_strategy="no",
        eval_strategy="steps",
        eval_steps=2,
        disable_tqdm=True,
        **options,
    )
    return transformers.Trainer(model=model, args=args, train_dataset=data, eval_dataset=data[:8], callbacks=callbacks)


@pytest.mark.slow
def test_steps_logged_and_the_planted_leak_named_once(tmp_path: Path) -> None:
    hoard, guard = Hoard(), VramGuardCallback(every="step")
    trainer = tiny_trainer(tmp_path, [hoard, guard])
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        trainer.train()
    leaks = [w for w in caught if issubclass(w.category, vramguard.LeakWarning)]
    assert len(leaks) == 1, "the same holder is warned once, not at each of the 4 steps"
    message = str(leaks[0].message)
    assert "training loop session 'step 1' leaked 2.00 KiB" in message
    assert "local 'hoard'.outputs[0] in test_steps_logged_and_the_planted_leak_named_once()" in message, message
    # The loop's own carried state (gradients, the optimizer's moments, the last loss) is no leak.
    assert "exp_avg" not in message and "tr_loss" not in message
    train_logs = [e for e in trainer.state.log_history if "loss" in e]
    assert len(train_logs) == 4
    for entry in train_logs:
        assert set(entry) >= KEYS, entry
        assert entry["vram_leaked_bytes"] == 2048
        assert entry["vram_peak_bytes"] >= 0
    evals = [e for e in trainer.state.log_history if "eval_loss" in e]
    assert len(evals) == 2
    for entry in evals:
        assert {f"eval_{k}" for k in KEYS} <= set(entry), entry
        assert entry["eval_vram_leaked_bytes"] == 0, "the evaluation is measured on its own"
    assert guard.eval_report is not None and guard.eval_report.name == "evaluate"
    assert guard.train_report is not None and guard.train_report.name == "step 4"
    assert not vramguard.GpuSession.__dict__.get("_active"), "no session left open"


@pytest.mark.slow
def test_every_n_steps_and_leaks_raise(tmp_path: Path) -> None:
    trainer = tiny_trainer(tmp_path, [Hoard(), VramGuardCallback(every=2, leaks="raise")])
    with pytest.raises(vramguard.LeakError) as raised:
        trainer.train()
    # Two steps in one session: both steps' logits, held through the callback list; the loader's
    # prefetched batch (a local of accelerate's iterator) is the loop's, not a leak.
    assert str(raised.value).startswith(
        "training loop session 'step 1' leaked 4.00 KiB: 4.00 KiB in 2 tensors held by "
    )
    assert ".outputs" in str(raised.value) and "next_batch" not in str(raised.value)


def test_bad_arguments() -> None:
    with pytest.raises(vramguard.InvalidArgument, match="every"):
        VramGuardCallback(every=0)
    with pytest.raises(vramguard.InvalidArgument, match="every"):
        VramGuardCallback(every="batch")  # type: ignore[arg-type]
    with pytest.raises(vramguard.InvalidArgument, match="leaks"):
        VramGuardCallback(leaks="log")  # type: ignore[arg-type]
    with pytest.raises(vramguard.InvalidArgument, match="max_peak"):
        VramGuardCallback(max_peak="lots")


KEPT: list[Any] = []


class KeepingTrainer(transformers.Trainer):  # type: ignore[misc]
    """The planted leak of issue 25: a ``compute_loss`` that keeps each step's outputs (a
    ``CausalLMOutputWithCrossAttentions``, with its graph) in a global list."""

    def compute_loss(self, model: Any, inputs: Any, return_outputs: bool = False, **kwargs: Any) -> Any:
        loss, outputs = super().compute_loss(model, inputs, return_outputs=True, **kwargs)
        KEPT.append(outputs)
        return (loss, outputs) if return_outputs else loss


@pytest.mark.slow
def test_a_compute_loss_keeping_its_outputs_is_warned_once_over_three_windows(tmp_path: Path) -> None:
    guard = VramGuardCallback(every="step")
    plain = tiny_trainer(tmp_path, [])
    args = transformers.TrainingArguments(
        output_dir=str(tmp_path),
        max_steps=3,
        per_device_train_batch_size=4,
        logging_steps=1,
        report_to=[],
        use_cpu=True,
        save_strategy="no",
        disable_tqdm=True,
    )
    trainer = KeepingTrainer(model=plain.model, args=args, train_dataset=plain.train_dataset, callbacks=[guard])
    windows: list[vramguard.Leaks] = []
    original = guard.meter.end_train

    def end_train(*args: Any) -> Any:
        result = original(*args)
        report = guard.train_report
        assert report is not None and report.leaked_bytes, report
        # Judged inside the loop, as the meter does: the loop's own locals (``grad_norm``) are
        # the loop's, not the user's leak.
        windows.append(vramguard.Leaks(guard.meter.user_leaks(report)))
        return result

    guard.meter.end_train = end_train  # type: ignore[method-assign]
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            trainer.train()
        assert len(KEPT) == 3
        holder = f"global {__name__}.KEPT"
        # Each window leaks its own step's output (logits and loss), one group named by the list.
        assert [[(g.holder, g.count) for g in leaks.groups] for leaks in windows] == [[(holder, 2)]] * 3
        leaks = [w for w in caught if issubclass(w.category, vramguard.LeakWarning)]
        assert len(leaks) == 1, [str(w.message) for w in leaks]
        message = str(leaks[0].message)
        assert message.startswith("training loop session 'step 1' leaked "), message
        assert f"tensors held by {holder}" in message, message
    finally:
        KEPT.clear()
