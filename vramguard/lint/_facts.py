"""What one expression tells about memory: a scalar, a tensor or model on a device, a drop.

These are syntactic judgements, cautious on purpose: a value the checker cannot classify is
neither a scalar nor device memory, and no rule fires on "maybe" alone where that would be noisy.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Callable

_SCALAR_CALLS = frozenset(
    {
        "int", "float", "str", "bool", "len", "round", "abs", "repr", "format", "hash", "id", "isinstance",
        "hasattr", "callable", "time", "perf_counter", "monotonic", "process_time", "time_ns", "perf_counter_ns",
        "getpid", "item", "numel", "nelement", "element_size", "dim", "is_available", "device_count",
        "current_device", "cpu_mem_used",
    }
)  # fmt: skip
# torch.cuda.memory_allocated(), mps.current_allocated_memory(), convert_file_size_to_int(), ... return numbers.
_MEMORY_STAT = re.compile(
    r"(memory_(allocated|reserved|used|cached)|allocated_memory|mem_used|mem_get_info|_to_(int|float|str|bool))$"
)
_SCALAR_ATTRS = frozenset({"shape", "dtype", "device", "ndim", "is_cuda", "requires_grad", "training", "name"})
_LOADER = re.compile(r"^(from_pretrained|from_single_file|load_model|load_\w*model\w*|load_pipeline)$")
_FACTORIES = frozenset(
    {
        "randn", "rand", "randint", "zeros", "ones", "empty", "full", "tensor", "arange", "linspace", "eye",
        "zeros_like", "ones_like", "empty_like", "full_like", "randn_like", "rand_like",
    }
)  # fmt: skip
# Methods whose result is no longer device memory: a Python number or list, a CPU or NumPy copy.
_DTYPE = re.compile(r"(dtype|^(float|half|bfloat|double|int|uint|bool|complex|long|short)\d*)$")
# What from_pretrained() loads without weights, by the loading class or the name it is bound to.
_HOST_LOADED = re.compile(r"(tokenizer|processor|feature_?extractor|config|scheduler|metadata)s?(_?fast)?$", re.I)
_CAST_KEYWORDS = frozenset({"dtype", "non_blocking", "copy", "memory_format"})
_OFF_DEVICE_METHODS = frozenset({"item", "tolist", "numpy", "cpu", "size", "dim", "numel", "data_ptr", "stride"})


def callee(call: ast.Call) -> str | None:
    """The called name: ``empty_cache`` for ``torch.cuda.empty_cache()``."""
    func = call.func
    if isinstance(func, ast.Attribute):
        return func.attr
    if isinstance(func, ast.Name):
        return func.id
    return None


def is_loader(call: ast.Call) -> bool:
    """``from_pretrained(...)``, ``load_model(...)``, ``load_align_model(...)``: a call that returns a model."""
    name = callee(call)
    return name is not None and _LOADER.match(name) is not None


def is_cpu(node: ast.expr) -> bool:
    """``"cpu"``, ``torch.device("cpu")``, ``device="cpu"``-style literals."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value.split(":")[0] == "cpu"
    if isinstance(node, ast.Call) and callee(node) == "device" and node.args:
        return is_cpu(node.args[0])
    return False


def moves_to_cpu(call: ast.Call) -> bool:
    """``x.cpu()``, ``x.to("cpu")``, ``x.to(device="cpu")``."""
    name = callee(call)
    if name == "cpu":
        return True
    if name == "to":
        values = list(call.args) + [k.value for k in call.keywords if k.arg == "device"]
        return any(is_cpu(v) for v in values)
    return False


def is_drop_value(node: ast.expr | None) -> bool:
    """``None`` or an empty container: assigning it lets go of what the target held."""
    if isinstance(node, ast.Constant):
        return node.value is None
    if isinstance(node, (ast.List, ast.Tuple, ast.Set)):
        return not node.elts
    if isinstance(node, ast.Dict):
        return not node.keys
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
        return node.func.id in {"list", "dict", "set", "tuple"} and not node.args and not node.keywords
    return False


def is_scalar(
    node: ast.expr,
    scalar_attrs: frozenset[str] | set[str] = frozenset(),
    scalar_calls: frozenset[str] | set[str] = frozenset(),
    name: Callable[[str], bool] | None = None,
) -> bool:
    """A number, string, bool or None, arithmetic on them, or a literal container of them: never device memory.

    ``scalar_attrs`` and ``scalar_calls`` are the module's attributes and functions known to be scalars;
    ``name`` says whether a bare name is one (a local given only scalars, a parameter typed as one).
    """

    def rec(n: ast.expr) -> bool:
        return is_scalar(n, scalar_attrs, scalar_calls, name)

    if isinstance(node, (ast.Constant, ast.JoinedStr, ast.Compare)):
        return True
    if isinstance(node, ast.Name):
        return name is not None and name(node.id)
    if isinstance(node, ast.UnaryOp):
        return rec(node.operand)
    if isinstance(node, ast.BinOp):
        return rec(node.left) and rec(node.right)
    if isinstance(node, ast.BoolOp):
        return all(rec(v) for v in node.values)
    if isinstance(node, ast.IfExp):
        return rec(node.body) and rec(node.orelse)
    if isinstance(node, (ast.List, ast.Tuple, ast.Set)):
        return all(rec(e) for e in node.elts)
    if isinstance(node, ast.Dict):
        return all(v is not None and rec(v) for v in node.values)
    if isinstance(node, ast.Subscript):
        return rec(node.value)  # an item of a container of scalars
    if isinstance(node, ast.Attribute):
        return node.attr in scalar_attrs
    if isinstance(node, ast.Call):
        called = callee(node)
        if called in {"max", "min", "sum"}:
            return bool(node.args) and all(rec(a) for a in node.args)
        return called is not None and (
            called in _SCALAR_CALLS or called in scalar_calls or _MEMORY_STAT.search(called) is not None
        )
    return False


def host_name(name: str) -> bool:
    """``tokenizer``, ``image_processor``, ``align_metadata``: a name for something with no weights."""
    return _HOST_LOADED.search(name) is not None


def source_name(node: ast.expr) -> str:
    """The last name of ``a.b.C`` or ``C``; empty for anything else."""
    return node.attr if isinstance(node, ast.Attribute) else node.id if isinstance(node, ast.Name) else ""


def _is_dtype(node: ast.expr) -> bool:
    """``torch.float16``, ``weight_dtype``, ``self.vae.dtype``: a dtype, not a device."""
    return _DTYPE.search(source_name(node)) is not None


def _dtype_only(call: ast.Call) -> bool:
    """``x.to(torch.float32)``, ``x.to(dtype=...)``: a cast that does not say where the result lives."""
    keywords = {k.arg for k in call.keywords}
    return (
        bool(call.args or keywords)
        and all(_is_dtype(a) for a in call.args)
        and keywords <= _CAST_KEYWORDS
        and not any(k.arg == "dtype" and not _is_dtype(k.value) for k in call.keywords)
    )


def _stored(node: ast.expr) -> bool:
    """An attribute or its item (``state.latents``): a pipeline's state, presumed on its device."""
    while isinstance(node, ast.Subscript):
        node = node.value
    return isinstance(node, ast.Attribute)


def holds_device_memory(node: ast.expr, device_names: set[str] | frozenset[str]) -> bool:
    """Whether an expression's value is (or contains) a tensor or model on a device.

    Evidence only: a loader (``from_pretrained``, ``load_model``), ``.to(device)`` / ``.cuda()``,
    a torch factory with a non-CPU ``device=``, or anything computed from a name known to hold one.
    """
    if isinstance(node, ast.Name):
        return node.id in device_names
    if isinstance(node, ast.Attribute):
        return node.attr not in _SCALAR_ATTRS and holds_device_memory(node.value, device_names)
    if isinstance(node, ast.Subscript):
        return holds_device_memory(node.value, device_names)
    if isinstance(node, ast.BinOp):
        return holds_device_memory(node.left, device_names) or holds_device_memory(node.right, device_names)
    if isinstance(node, (ast.Tuple, ast.List)):
        return any(holds_device_memory(e, device_names) for e in node.elts)
    if isinstance(node, ast.Await):
        return holds_device_memory(node.value, device_names)
    if not isinstance(node, ast.Call):
        return False
    name = callee(node)
    if name is None or moves_to_cpu(node) or name in _OFF_DEVICE_METHODS or is_scalar(node):
        return False
    func = node.func
    if name == "to" and _dtype_only(node) and isinstance(func, ast.Attribute) and not _stored(func.value):
        return holds_device_memory(func.value, device_names)  # a cast stays where its input is
    if name == "cuda" or (name == "to" and (node.args or node.keywords)):
        return True
    if is_loader(node):  # AutoTokenizer.from_pretrained() loads no weights: a tokenizer is host memory
        return not (isinstance(func, ast.Attribute) and host_name(source_name(func.value)))
    if name in _FACTORIES and isinstance(func, ast.Attribute) and isinstance(func.value, ast.Name):
        device = [k.value for k in node.keywords if k.arg == "device"]
        return func.value.id == "torch" and bool(device) and not is_cpu(device[0])
    if isinstance(func, ast.Name):
        return func.id in device_names  # calling a model gives its outputs
    return isinstance(func, ast.Attribute) and holds_device_memory(func.value, device_names)
