"""The rules on code they had not seen (issue 30): each false finding reduced to its shape, beside the true one.

Shapes from whisperX's ``whisperx/transcribe.py``, stable-ts's ``original_whisper.py``, the diffusers
training examples and peft's scripts; ``tests/lint/corpus2`` holds the excerpts themselves.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

from vramguard.lint import check_source


def codes(source: str) -> list[tuple[int, str]]:
    return [(f.line, f.code) for f in check_source(textwrap.dedent(source), "t.py")]


def test_what_a_loader_returns_beside_its_model_is_not_memory() -> None:
    # whisperx/transcribe.py: `align_metadata` is a dict of strings; only the model is deleted.
    source = textwrap.dedent("""\
        def transcribe_task(args):
            align_model, align_metadata = load_align_model(args.language, args.device)
            for result in args.results:
                if result["language"] != align_metadata["language"]:
                    align_model, align_metadata = load_align_model(result["language"], args.device)
                result = align(result["segments"], align_model, align_metadata, args.device)
            del align_model
            gc.collect()
            torch.cuda.empty_cache()
            return args.results
        """)
    assert codes(source) == []
    # ... unless the code uses it as a model or tensor: moved, called, or handed to torch.
    for use in ("align_metadata.to(args.device)", "align_metadata.eval()", "torch.stack(align_metadata)"):
        shown = source.replace("    del align_model\n", f"    {use}\n    del align_model\n")
        assert codes(shown) == [(10, "VG004")], use
    # Called, it is a model too, unless its name says it has no weights (a tokenizer is callable).
    head = source.replace("align_metadata", "align_head").replace(
        "    del align_model\n", "    align_head(x)\n    del align_model\n"
    )
    assert codes(head) == [(10, "VG004")]
    # The model itself is still memory: left alive, it is found.
    assert codes(source.replace("    del align_model\n", "")) == [(8, "VG004")]


def test_deleting_an_item_of_a_list_of_text_is_not_a_drop() -> None:
    # stable-ts's transcribe: `del resume[-1]` on a list of segments, 29 lines after empty_cache().
    source = """\
        def transcribe(model, audio, resume=None):
            segments = model.run(audio)
            if model.device != torch.device("cpu"):
                torch.cuda.empty_cache()
            if resume is not None:
                while resume and resume[-1].end > segments[0].start:
                    del resume[-1]
                resume.segments.extend(segments)
            return resume
        """
    assert codes(source) == []


def test_deleting_an_item_the_code_shows_to_be_a_tensor_is_a_drop() -> None:
    outputs = "def f(model, x):\n    net = model.cuda()\n    outputs = net(x)\n"
    outputs += "    torch.cuda.empty_cache()\n    del outputs[0]\n"
    assert codes(outputs) == [(4, "VG001"), (4, "VG004")]  # and `net` is alive
    cache = """\
        class Cache:
            def put(self, key, x):
                self.tensors[key] = x.to("cuda")
            def clear(self, key):
                torch.cuda.empty_cache()
                del self.tensors[key]
        """
    assert codes(cache) == [(5, "VG001")]
    assert codes(cache.replace('x.to("cuda")', "str(x)")) == []


def test_an_option_compared_with_a_string_is_not_memory() -> None:
    # diffusers' training examples: `args.resume_from_checkpoint = None` long after free_memory().
    source = """\
        def main(args):
            free_memory()
            if args.resume_from_checkpoint:
                if args.resume_from_checkpoint != "latest":
                    path = os.path.basename(args.resume_from_checkpoint)
                if path is None:
                    args.resume_from_checkpoint = None
        """
    assert codes(source) == []
    assert codes(source.replace('!= "latest"', "is not None")) == [(2, "VG001")]


def test_resetting_a_name_of_unknown_kind_is_not_a_drop_but_del_is() -> None:
    # diffusers: `image_logs = None` before an `if` that may fill it again; `generator = None` in an else.
    source = """\
        def train(accelerator, pipeline, epoch):
            image_logs = log_validation(pipeline, epoch)
            del pipeline
            free_memory()
            image_logs = None
            if accelerator.is_main_process:
                image_logs = log_validation(None, epoch)
            return image_logs
        """
    assert codes(source) == []
    assert codes(source.replace("image_logs = None", "del image_logs")) == [(4, "VG001")]
    loaded = source.replace("log_validation(pipeline, epoch)", "Pipeline.from_pretrained(epoch)")
    assert codes(loaded) == [(4, "VG001")]


def test_a_device_guarded_cache_call_returns_the_drops_before_it() -> None:
    # diffusers' sd15 advanced example: a second, guarded empty_cache() right after `del vae`.
    source = """\
        def train(args, vae, text_encoders):
            del text_encoders
            torch.cuda.empty_cache()
            if args.cache_latents:
                del vae
                if torch.cuda.is_available():
                    torch.cuda.empty_cache()
        """
    assert codes(source) == []
    assert codes(source.replace("torch.cuda.is_available()", "args.step % 100 == 0")) == [(3, "VG001")]


def test_a_cast_stays_where_its_input_is() -> None:
    # diffusers' community tile upscaler: a preprocessed image cast to float32 is still on the CPU.
    source = """\
        def __call__(self, image, device):
            image_tensor = self.image_processor.preprocess(image).to(dtype=torch.float32)
            latents = self.prepare_latents(image_tensor, device)
            torch.cuda.empty_cache()
            return self.decode(latents)
        """
    assert codes(source) == []
    moved = source.replace(".to(dtype=torch.float32)", ".to(device, dtype=torch.float32)")
    assert codes(moved) == [(4, "VG004")]


def test_a_tokenizer_or_processor_is_not_device_memory() -> None:
    # peft's examples: AutoTokenizer.from_pretrained() and what the tokenizer encodes.
    source = """\
        def train(name):
            tokenizer = AutoTokenizer.from_pretrained(name)
            tokens = tokenizer.encode("<|start|>")
            run(name, tokens)
            torch.cuda.empty_cache()
        """
    assert codes(source) == []
    model = source.replace("AutoTokenizer", "AutoModelForCausalLM").replace("tokenizer", "model")
    assert codes(model) == [(5, "VG004"), (5, "VG004")]


def test_a_local_bound_again_each_iteration_is_not_vg004() -> None:
    # peft's MetaMathQA runner: the batch is freed by the next iteration's binding, into blocks reused at once.
    source = """\
        def train(model, loader, schedule):
            for step, batch in enumerate(loader):
                batch = batch.to(model.device)
                model(**batch).loss.backward()
                if step % schedule == 0:
                    torch.cuda.empty_cache()
        """
    assert codes(source) == []


def test_a_local_that_another_object_holds_is_not_vg004() -> None:
    # peft's image-gen evaluation: Module.to() returns the module the pipeline holds.
    source = """\
        def evaluate(pipeline, device):
            transformer = pipeline.transformer.to(device)
            transformer.eval()
            torch.cuda.empty_cache()
            return run(pipeline)
        """
    assert codes(source) == []
    # A tensor's .to() is a copy that only the local holds.
    copy = source.replace("transformer.eval()", "print(transformer.shape)")
    assert codes(copy) == [(4, "VG004")]
    # diffusers' ideogram4 validation: a plain attribute read.
    plain = "def f(pipeline):\n    module = pipeline.transformer\n    module.forward = None\n    free_memory()\n"
    assert codes(plain) == []


def test_an_attribute_annotated_with_a_host_type_is_not_memory() -> None:
    # unsloth studio's diffusion backend: `self._active_generate_cancel = None`, a threading.Event.
    source = """\
        class Backend:
            def __init__(self):
                self._cancel: Optional[threading.Event] = None
            def generate(self, pipe, cancel):
                self._cancel = cancel
                torch.cuda.empty_cache()
                self._cancel = None
        """
    assert codes(source) == []
    assert codes(source.replace("Optional[threading.Event]", "Optional[torch.nn.Module]")) == [(6, "VG001")]


def test_a_cache_call_guarded_by_the_device_name_returns_the_drops_before_it() -> None:
    # unsloth studio's trainers: `del vae; gc.collect(); if device == "cuda": torch.cuda.empty_cache()`.
    source = """\
        def train(cfg, device, pipe, vae):
            gc.collect()
            if device == "cuda":
                torch.cuda.empty_cache()
            cache = build_cache(vae, cfg)
            pipe.vae = None
            del vae
            gc.collect()
            if device == "cuda":
                torch.cuda.empty_cache()
            return cache
        """
    assert codes(source) == []


def test_a_whole_whose_parts_are_still_used_is_not_vg004() -> None:
    # unsloth studio's SDXL trainer: the pipeline's U-Net trains on after the cache is emptied.
    source = """\
        def train(name, device, steps):
            pipe = StableDiffusionXLPipeline.from_pretrained(name).to(device)
            unet, vae = pipe.unet, pipe.vae
            del vae
            torch.cuda.empty_cache()
            for step in range(steps):
                unet(step)
        """
    assert codes(source) == []
    assert codes(source.replace("unet(step)", "run(step)")) == [(5, "VG004")]


def test_a_repeat_of_release_steps_is_not_vg005() -> None:
    # unsloth's save.py: `for _ in range(3): torch.cuda.empty_cache(); gc.collect()`.
    source = """\
        def cleanup():
            for _ in range(3):
                torch.cuda.empty_cache()
                gc.collect()
            for _ in range(2):
                gc.collect()
                if torch.cuda.is_available():
                    torch.cuda.empty_cache()
        """
    assert codes(source) == []
    assert codes(source.replace("gc.collect()\n", "step()\n", 1)) == [(3, "VG005")]


def test_a_tensor_kept_by_a_second_name_is_found() -> None:
    # unsloth's kernels/fp8.py: `wq = xq`, then `del block_scale, xq` leaves the tensor to `wq`.
    source = """\
        def test_has_fbgemm():
            xq = torch.ones(128, 128, device="cuda")
            wq = xq
            block_scale = torch.ones(1, 1, device="cuda")
            ok = run(xq, wq, block_scale)
            del block_scale, xq
            torch.cuda.empty_cache()
            return ok
        """
    findings = check_source(textwrap.dedent(source))
    assert [(f.line, f.code) for f in findings] == [(7, "VG004")]
    assert "`wq`" in findings[0].message


def test_a_local_the_loop_uses_again_is_not_vg004() -> None:
    # trl's PPO trainer: statistics buffers filled on every update, the cache emptied at the end of each.
    source = """\
        def train(self, updates, device):
            approxkl_stats = torch.zeros(4, device=device)
            for update in updates:
                approxkl_stats[update] = step(update)
                log(approxkl_stats.mean().item())
                if update % 10 == 0:
                    empty_cache()
        """
    assert codes(source) == []
    after = (
        source.replace("                if update % 10 == 0:\n                    empty_cache()\n", "")
        + "    empty_cache()\n"
    )
    assert codes(after) == [(6, "VG004")]


def test_drops_at_one_place_are_listed_in_the_same_order_whatever_the_hash_seed() -> None:
    # unsloth's `_pk_hidden = _pk_sel = _pk_result = _pk_ref = None`: two drops at one line and column.
    program = (
        "from vramguard.lint import check_source\n"
        "src = 'def f(m):\\n    a = m.cuda()\\n    b = m.cuda()\\n    torch.cuda.empty_cache()\\n    b = a = None\\n'\n"
        "print(check_source(src)[0].message)\n"
    )
    messages = {
        subprocess.run(
            [sys.executable, "-c", program],
            capture_output=True,
            text=True,
            check=True,
            env={**os.environ, "PYTHONHASHSEED": str(seed)},
        ).stdout
        for seed in range(6)
    }
    assert len(messages) == 1
    assert "`a = None` (line 5) and `b = None` (line 5)" in messages.pop()
