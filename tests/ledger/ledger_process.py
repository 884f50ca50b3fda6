"""A process the ledger explains, run by test_ledger_models.py as its own child process:

    python tests/ledger/ledger_process.py {text-model,training,asr} SCRATCH

Builds what the case names from a config (random weights, nothing downloaded), uses it as a
program would, keeps it in the globals ``MODEL`` / ``OPTIMIZER`` / ``PIPE``, takes
``vramguard.explain("cpu")`` and prints one JSON document: the ledger, and the exact storage
bytes of the known holders counted from the objects themselves (not from the ledger).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import torch

import vramguard

MODEL: Any = None
OPTIMIZER: Any = None
PIPE: Any = None


def storage_bytes(tensors: Any) -> int:
    """The bytes of the distinct storages under ``tensors``."""
    return sum({t.untyped_storage()._cdata: t.untyped_storage().nbytes() for t in tensors}.values())


def _gpt2() -> Any:
    import transformers

    config = transformers.GPT2Config(
        n_layer=2, n_embd=128, n_head=4, vocab_size=5000, n_positions=256, bos_token_id=0, eos_token_id=0
    )
    return transformers.GPT2LMHeadModel(config)


def text_model(_: Path) -> dict[str, Any]:
    """A tiny BERT classifier, run on a batch without gradients, as a server would."""
    global MODEL
    import transformers

    config = transformers.BertConfig(
        vocab_size=8000, hidden_size=128, num_hidden_layers=2, num_attention_heads=4, intermediate_size=512
    )
    MODEL = transformers.BertForSequenceClassification(config).eval()
    with torch.no_grad():
        MODEL(input_ids=torch.randint(0, 8000, (8, 128))).logits.sum()
    return {
        "global __main__.MODEL": {
            "parameters": storage_bytes(MODEL.parameters()),
            "buffers": storage_bytes(MODEL.buffers()),
        }
    }


def training(_: Path) -> dict[str, Any]:
    """A tiny GPT-2 trained for two AdamW steps."""
    global MODEL, OPTIMIZER
    torch.manual_seed(0)
    MODEL = _gpt2()
    OPTIMIZER = torch.optim.AdamW(MODEL.parameters(), lr=1e-3)
    for _ in range(2):
        ids = torch.randint(0, 5000, (4, 64))
        MODEL(input_ids=ids, labels=ids).loss.backward()
        OPTIMIZER.step()
    del ids
    parameters = list(MODEL.parameters())
    state = [v for s in OPTIMIZER.state.values() for v in s.values() if isinstance(v, torch.Tensor)]
    return {
        "global __main__.MODEL": {
            "parameters": storage_bytes(parameters),
            "gradients": storage_bytes(p.grad for p in parameters if p.grad is not None),
        },
        "global __main__.OPTIMIZER": {"optimizer state": storage_bytes(state)},
    }


def asr(scratch: Path) -> dict[str, Any]:
    """The tiny Whisper + pyannote pipeline, loaded on the CPU and run once on the bundled WAV."""
    global PIPE
    from vramguard.asr import ASRDiarizationPipeline
    from vramguard.asr.testing import build_tiny_diarizer, build_tiny_whisper, sample_audio_path

    build_tiny_whisper(scratch / "whisper")
    build_tiny_diarizer(scratch / "diarizer")
    PIPE = ASRDiarizationPipeline.from_pretrained(
        scratch / "whisper",
        scratch / "diarizer",
        device="cpu",
        generate_kwargs={"max_new_tokens": 8, "num_beams": 1, "temperature": 0.0},
    )
    PIPE(sample_audio_path())
    whisper = PIPE.asr_pipeline.model
    return {"whisper": storage_bytes([*whisper.parameters(), *whisper.buffers()])}


CASES = {"text-model": text_model, "training": training, "asr": asr}


def main(argv: list[str]) -> int:
    case, scratch = argv
    expected = CASES[case](Path(scratch))
    ledger = vramguard.explain("cpu")
    print(json.dumps({"ledger": ledger.to_dict(), "expected": expected}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
