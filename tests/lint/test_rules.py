"""The rules on the patterns of issue 10: what each must find, and the look-alikes it must leave alone."""

from __future__ import annotations

import textwrap

from vramguard.lint import check_source


def codes(source: str) -> list[tuple[int, str]]:
    return [(f.line, f.code) for f in check_source(textwrap.dedent(source), "t.py")]


def test_one_finding_per_drop_whatever_the_branches() -> None:
    # transformers' TrainerMemoryTracker.stop: one empty_cache() per elif, one drop after them all.
    source = """\
        class Tracker:
            def stop(self):
                if a:
                    self.torch.cuda.empty_cache()
                elif b:
                    self.torch.mlu.empty_cache()
                elif c:
                    self.torch.mps.empty_cache()
                self.model = None
        """
    findings = check_source(textwrap.dedent(source))
    assert [(f.line, f.code) for f in findings] == [(4, "VG001")]
    assert "the same drop follows the calls on line 6, 8 too" in findings[0].message


def test_attributes_the_module_only_gives_scalars_are_not_memory() -> None:
    source = """\
        class Tracker:
            def start(self):
                self.peak = self.torch.cuda.max_memory_allocated()
                self.stage = "train"
                self.count = self.count_before - 1
                self.count_before = 0
            def stop(self):
                self.torch.cuda.empty_cache()
                self.peak = None
                self.stage = None
                del self.count
        """
    assert codes(source) == []


def test_an_attribute_only_ever_set_to_none_may_hold_memory() -> None:
    assert codes("def f(self):\n    torch.cuda.empty_cache()\n    self.pipe = None\n") == [(2, "VG001")]


def test_offloaded_to_the_cpu_first_is_not_device_memory() -> None:
    source = """\
        def f(self):
            self.model.to("cpu")
            for hook in self.hooks:
                hook.offload()
            self.vae = self.vae.cpu()
            torch.cuda.empty_cache()
            self.model = None
            self.hooks = None
            self.vae = None
        """
    assert codes(source) == []


def test_two_identical_readme_lines_are_both_found() -> None:
    source = """\
        model = whisperx.load_model("large-v2", device)
        gc.collect(); torch.cuda.empty_cache(); del model
        model_a, metadata = whisperx.load_align_model(language_code="en", device=device)
        result = whisperx.align(result, model_a, metadata, audio, device)
        gc.collect(); torch.cuda.empty_cache(); del model_a
        """
    assert codes(source) == [(2, "VG001"), (5, "VG001")]


def test_a_later_call_right_after_the_drop_returns_it() -> None:
    assert (
        codes("def f(x):\n    torch.cuda.empty_cache()\n    del x\n    gc.collect()\n    torch.cuda.empty_cache()\n")
        == []
    )
    # ... but not when other work ran in between: the memory sat in the cache meanwhile.
    source = "def f(x, y):\n    torch.cuda.empty_cache()\n    del x\n    y.run()\n    torch.cuda.empty_cache()\n"
    assert codes(source) == [(2, "VG001")]


def test_starred_release_memory_before_clearing_own_lists() -> None:
    # accelerate's Accelerator.free_memory
    source = """\
        class Accelerator:
            def free_memory(self, *objects):
                objects = release_memory(*objects)
                self._models = []
                self._optimizers = []
                self.step = 0
                return objects

            def clear(self, *objects):
                return self.free_memory(*objects)
        """
    findings = check_source(textwrap.dedent(source))
    assert [(f.line, f.code) for f in findings] == [(3, "VG001"), (3, "VG002")]
    assert "`self._models = []` (line 4) and `self._optimizers = []` (line 5)" in findings[0].message


def test_except_block_holds_the_traceback() -> None:
    source = """\
        def find_batch_size(fn, batch_size):
            while True:
                try:
                    return fn(batch_size)
                except Exception as e:
                    del e
                    clear_device_cache(garbage_collection=True)
                    batch_size //= 2
        """
    assert codes(source) == [(7, "VG003")]
    right = """\
        def find_batch_size(fn, batch_size):
            while True:
                failed = False
                try:
                    return fn(batch_size)
                except torch.cuda.OutOfMemoryError:
                    failed = True
                if failed:
                    torch.cuda.empty_cache()
                    batch_size //= 2
        """
    assert codes(right) == []


def test_a_local_still_holding_a_tensor_at_the_end() -> None:
    source = """\
        def denoise(state):
            latents = state.latents.to(torch.float32)
            frames = decode(latents[:, 1:])
            state.frames = frames
            state.latents = None
            torch.cuda.empty_cache()
            return state
        """
    findings = check_source(textwrap.dedent(source))
    assert [(f.line, f.code) for f in findings] == [(6, "VG004")]
    assert "`latents`" in findings[0].message


def test_locals_used_afterwards_returned_stored_or_parameters_are_not_vg004() -> None:
    source = """\
        def run(model, x):
            out = model.to("cuda")(x)
            kept = torch.zeros(3, device="cuda")
            cache.append(kept)
            small = out.argmax(-1).tolist()
            torch.cuda.empty_cache()
            return out, small
        """
    assert codes(source) == []
    assert codes("def f():\n    m = load_model('x')\n    del m\n    torch.cuda.empty_cache()\n") == []


def test_every_iteration_of_a_loop() -> None:
    source = """\
        def train(loader, model, names):
            for step, batch in enumerate(loader):
                model(batch).backward()
                torch.cuda.empty_cache()
            for step, batch in enumerate(loader):
                if step % 100 == 0:
                    torch.cuda.empty_cache()
            for name in names:
                stage = load_model(name)
                stage.run()
                del stage
                torch.cuda.empty_cache()
        """
    assert codes(source) == [(4, "VG005")]


def test_data_flow_early_return_rebinding_with_try() -> None:
    source = """\
        def f(self, x, y, z):
            if self.cuda:
                torch.cuda.empty_cache()
                return
            del self.model
            torch.cuda.empty_cache()
            x = make()
            del x
            with torch.no_grad():
                torch.cuda.empty_cache()
            try:
                run()
            finally:
                del y
        """
    assert codes(source) == [(10, "VG001")]


def test_a_loop_body_is_judged_once() -> None:
    # The del at the top of the body runs after the previous iteration's call, but a body is judged once.
    source = (
        "def f(xs):\n    for x in xs:\n        del x\n        y = 1\n        torch.cuda.empty_cache()\n        y = y\n"
    )
    assert codes(source) == []


def test_noqa_and_select() -> None:
    source = "def f(x):\n    torch.cuda.empty_cache()  # noqa: VG001\n    del x\n"
    assert codes(source) == []
    assert check_source(source, noqa=False)[0].code == "VG001"
    assert check_source("def f(x):\n    torch.cuda.empty_cache()  # noqa\n    del x\n") == ()
    assert check_source("def f(x):\n    torch.cuda.empty_cache()  # noqa: VG003\n    del x\n")[0].code == "VG001"
    assert check_source("def f(x):\n    torch.cuda.empty_cache()\n    del x\n", select=["VG003"]) == ()


def test_a_call_per_device_in_a_loop_over_devices_is_not_vg005() -> None:
    source = "def f(devices):\n    for device in devices:\n        torch.cuda.synchronize(device)\n"
    source += "        empty_cache(device)\n"
    assert codes(source) == []


def test_a_local_stored_whole_escapes_but_one_passed_to_a_call_does_not() -> None:
    stored = "def f(s):\n    x = s.x.to('cuda')\n    s.kept = x[:, 1:]\n    torch.cuda.empty_cache()\n"
    passed = "def f(s):\n    x = s.x.to('cuda')\n    s.kept = decode(x[:, 1:])\n    torch.cuda.empty_cache()\n"
    assert codes(stored) == []
    assert codes(passed) == [(4, "VG004")]


def test_a_retry_loop_empties_the_cache_only_after_a_failed_attempt() -> None:
    source = """\
        def run(fn, batch_size):
            for attempt in range(3):
                try:
                    return fn(batch_size)
                except torch.cuda.OutOfMemoryError:
                    failed = True
                gc.collect()
                torch.cuda.empty_cache()
                batch_size //= 2
        """
    assert codes(source) == []


def test_columns_count_characters_not_bytes() -> None:
    (finding,) = check_source("def f(x):\n    s = 'é'; torch.cuda.empty_cache()\n    del x\n")
    assert finding.col == 14
