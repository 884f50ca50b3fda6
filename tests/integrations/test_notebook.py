"""The notebook magics in a real IPython InteractiveShell: %load_ext vramguard, %%vram, %vram and
%vram_release, with the notebook's own holders (the output history, the last exception) named
in notebook terms."""

from __future__ import annotations

import gc
import sys
import warnings
import weakref
from collections.abc import Iterator
from typing import Any

import pytest
import torch

import vramguard

pytest.importorskip("IPython")

from IPython.core.interactiveshell import InteractiveShell

from vramguard.integrations.notebook import VramMagics, magics_of, notebook_holder


@pytest.fixture
def shell() -> Iterator[Any]:
    saved = {name: getattr(sys, name) for name in ("displayhook", "excepthook")}
    main = sys.modules["__main__"]
    ip = InteractiveShell.instance()
    try:
        ip.run_cell("%load_ext vramguard", store_history=True)
        ip.run_cell("import torch", store_history=True)
        yield ip
    finally:
        ip.run_cell("%reset -f", store_history=False)
        InteractiveShell.clear_instance()
        for name, value in saved.items():
            setattr(sys, name, value)
        sys.modules["__main__"] = main
        for name in ("last_type", "last_value", "last_traceback", "last_exc"):
            if hasattr(sys, name):
                setattr(sys, name, None)
        gc.collect()


def cell(ip: Any, source: str) -> Any:
    result = ip.run_cell(source, store_history=True)
    return result


def magics(ip: Any) -> VramMagics:
    found = magics_of(ip)
    assert isinstance(found, VramMagics)
    return found


def test_load_ext_goes_through_the_package(shell: Any) -> None:
    assert "vram" in shell.magics_manager.magics["cell"]
    assert {"vram", "vram_release"} <= set(shell.magics_manager.magics["line"])
    with pytest.raises(vramguard.InvalidArgument):
        vramguard.load_ipython_extension(None)


def test_cell_in_a_session_renders_its_report(shell: Any, capsys: pytest.CaptureFixture[str]) -> None:
    capsys.readouterr()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = cell(
            shell, "%%vram --device cpu\nx = torch.ones(4096)\ntemporary = torch.ones(2**20)\ndel temporary\nx.sum()"
        )
    assert result.success, result.error_in_exec
    out = capsys.readouterr().out
    count = result.execution_count
    assert f"vramguard session 'cell {count}' on cpu" in out
    # x is the notebook's variable: kept by it, not leaked.
    assert "note: kept by notebook variable x: 16.0 KiB" in out, out
    report = magics(shell).last_report
    assert report is not None and report.leaked_bytes == 0 and not report.leaks
    assert report.kept_bytes >= 4 * 4096
    # The cell's output is what the cell shows: kept, not a leak; and it is Out[count] after.
    assert float(shell.user_ns["Out"][count]) == 4096.0
    assert not [w for w in caught if issubclass(w.category, vramguard.LeakWarning)]


def test_every_variable_a_cell_assigns_is_kept_not_leaked(shell: Any) -> None:
    source = (
        "%%vram --device cpu --leaks raise\n"
        "import torch as t\n"
        "a, (b, c) = t.ones(10), (t.ones(20), [t.ones(30)])\n"
        "for d in [t.ones(40)]:\n"
        "    pass\n"
        "def f():\n"
        "    return 1\n"
        "class Model(t.nn.Module):\n"
        "    pass\n"
        "model = t.nn.Linear(8, 8)\n"
        "if (e := t.ones(50)) is not None:\n"
        "    pass\n"
    )
    result = cell(shell, source)
    assert result.success, result.error_in_exec
    report = magics(shell).last_report
    assert report is not None and report.leaked_bytes == 0, report.leaks
    prefix = "kept by notebook variable "
    kept = sorted(n.split(":")[0].removeprefix(prefix) for n in report.notes if n.startswith(prefix))
    assert kept == ["a", "b", "c", "d", "e", "model"], "the module, function and class hold no data: not listed"


def test_a_leak_warning_points_at_the_cell(shell: Any) -> None:
    """An older list the cell appends to is the notebook's classic leak: warned, at the cell, not
    inside IPython's interactiveshell.py."""
    cell(shell, "history = []")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = cell(shell, "%%vram --device cpu\nloss = 1.0\nhistory.append(torch.ones(1024))")
    assert result.success, result.error_in_exec
    (warning,) = [w for w in caught if issubclass(w.category, vramguard.LeakWarning)]
    count = result.execution_count
    assert str(warning.message) == f"cell {count} leaked 4.00 KiB: held by notebook variable history[0]"
    assert "IPython" not in warning.filename and "interactiveshell" not in warning.filename
    import linecache

    assert linecache.getline(warning.filename, 2) == "history.append(torch.ones(1024))\n", warning.filename
    assert warning.lineno == 1, "no creation site recorded: the cell's first line"


def test_a_leak_warning_points_at_the_line_that_made_the_tensor(
    shell: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("VRAMGUARD_CENSUS_SITES", "1")
    cell(shell, "history = []")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = cell(shell, "%%vram --device cpu\nloss = 1.0\nhistory.append(torch.ones(1024))")
    assert result.success, result.error_in_exec
    (warning,) = [w for w in caught if issubclass(w.category, vramguard.LeakWarning)]
    assert warning.lineno == 2, warning


def test_leaks_raise_fails_the_cell(shell: Any, capsys: pytest.CaptureFixture[str]) -> None:
    cell(shell, "kept = []")
    result = cell(shell, "%%vram --device cpu --leaks raise\nkept.append(torch.ones(1024))")
    assert isinstance(result.error_in_exec, vramguard.LeakError)
    assert "held by notebook variable kept[0]" in str(result.error_in_exec)
    assert cell(shell, "%%vram --device cpu --leaks raise\nfresh = [torch.ones(1024)]\ntorch.ones(8).sum()").success


def test_plot_draws_the_timeline_inline(shell: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    shown: list[Any] = []
    import IPython.display

    monkeypatch.setattr(IPython.display, "display", lambda obj: shown.append(obj))
    assert cell(shell, "%%vram --device cpu --leaks ignore --plot\ny = torch.ones(2**20) * 2\ndel y").success
    assert len(shown) == 1 and isinstance(shown[0], IPython.display.Image)
    assert shown[0].data[:8] == b"\x89PNG\r\n\x1a\n"


def test_holders_in_notebook_terms() -> None:
    last = {"_": 7, "__": 6}
    assert notebook_holder("global __main__._oh[7]", last) == "output of cell 7 (Out[7])"
    assert notebook_holder("global __main__.Out[3][0]", last) == "output of cell 3 (Out[3])[0]"
    assert notebook_holder("global __main__._5", last) == "output of cell 5 (_5)"
    assert notebook_holder("global __main__._", last) == "output of cell 7 (_)"
    assert notebook_holder("global sys.displayhook.__", last) == "output of cell 6 (__)"
    assert notebook_holder("global __main__.___", last) == "an earlier cell's output (___)"
    assert notebook_holder("global __main__.model.fc", last) == "notebook variable model.fc"
    exc = (
        "traceback of ValueError raised in f() at <ipython-input-4-x>:3 (frame local 'big' of f()) "
        "via global sys.last_value"
    )
    assert notebook_holder(exc, last) == (
        "the last exception: traceback of ValueError raised in f() at <ipython-input-4-x>:3 "
        "(frame local 'big' of f()) (%vram_release drops it)"
    )
    assert notebook_holder("global torch.cache", last) == "global torch.cache"


def test_history_and_exception_holders_named_in_a_session(shell: Any) -> None:
    """Cells run inside one session (as nested cells do): the output history and the last
    exception hold what the session created, and the report says so in notebook terms."""
    cell(shell, "def f():\n    big = torch.ones(3000)\n    raise ValueError('x')")
    code = (
        "%%vram --device cpu --leaks ignore\n"
        "get_ipython().run_cell('torch.ones(1000) * 3', store_history=True)\n"
        "get_ipython().run_cell('f()', store_history=True)\n"
        "pass\n"  # not an expression: the cell's output would be kept, and the exception with it
    )
    assert cell(shell, code).success
    report = magics(shell).last_report
    assert report is not None
    holders = {h for leak in report.leaks for h in leak.holders}
    (out_cell,) = [n for n, value in shell.user_ns["Out"].items() if isinstance(value, torch.Tensor)]
    assert f"output of cell {out_cell} (Out[{out_cell}])" in holders, holders
    assert f"output of cell {out_cell} (_)" in holders
    assert any(h.startswith("the last exception: ") and "'big'" in h for h in holders), report.leaks


def test_vram_lists_what_the_notebook_holds_and_release_drops_it(
    shell: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    cell(shell, "torch.ones(2**18) * 2")  # 1 MiB in Out[n] and _
    out_cell = max(shell.user_ns["Out"])
    cell(shell, "def f():\n    big = torch.ones(2**17)\n    raise ValueError('x')")
    cell(shell, "f()")  # 512 KiB in the last exception's frame
    refs = [weakref.ref(shell.user_ns["Out"][out_cell])]
    capsys.readouterr()
    assert cell(shell, "%vram --device cpu").success
    out = capsys.readouterr().out
    assert "vramguard: cpu now" in out
    assert f"output of cell {out_cell} (Out[{out_cell}]): 1.00 MiB" in out
    assert "the last exception (ValueError: its traceback's frames): 512.0 KiB" in out
    assert cell(shell, "%vram_release --device cpu").success
    out = capsys.readouterr().out
    assert "dropped: the output history" in out and "the last exception" in out
    assert "vramguard release on cpu" in out
    assert refs[0]() is None, "the output history no longer holds the tensor"
    assert shell.user_ns["_"] == "" and not shell.user_ns["Out"]
    assert getattr(sys, "last_value", None) is None
    capsys.readouterr()
    cell(shell, "%vram --device cpu")
    assert "held by the notebook" not in capsys.readouterr().out
