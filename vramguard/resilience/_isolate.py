"""``isolated``: run a function in a spawned child process, so that everything it held comes
back when it returns, the CUDA context included (300–500 MiB per process on recent GPUs, the
one thing ``empty_cache()`` can never return).

The parent never touches the device. It pickles the call itself first (an argument that cannot
cross says so before a process starts), then waits on the result pipe and the process's
sentinel together: a child that is killed or crashes gives :class:`~vramguard.ChildCrashed`
naming the signal, never a hang. The child moves every CUDA tensor in its result (and in an
exception it raises) to the CPU before sending it (:mod:`vramguard.resilience._transfer`):
rebuilt as sent, it would land on the parent's GPU and create the context isolation avoids.
"""

from __future__ import annotations

import importlib
import multiprocessing
import pickle
import signal
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from multiprocessing.connection import Connection, wait
from typing import Any, Generic, TypeVar

from vramguard.core._errors import ChildCrashed, InvalidArgument, IsolationError, NotPicklable
from vramguard.core._options import SessionOptions
from vramguard.core._policy import add_note
from vramguard.core._records import SessionReport
from vramguard.core._session import GpuSession
from vramguard.resilience._transfer import dumps_result

T = TypeVar("T")
ISOLATED_MARK = "__vramguard_isolated__"
"""Set on ``gpu_session(isolate=True)`` wrappers: the child, finding one by name, runs the
function it wraps (the module's name is bound to the wrapper, which pickle cannot send)."""


@dataclass(frozen=True)
class Isolated(Generic[T]):
    """What an isolated call gave back: its ``value``, the child's session ``report``, and what
    the isolation cost. ``start_s``: from starting the process to the call beginning in the child
    (spawn, imports, unpickling the arguments); ``run_s``: the call and its session's release;
    ``transfer_s``: pickling, sending and unpickling the result; ``exit_s``: waiting for the child
    to exit (its interpreter's teardown: until then its memory is not back); ``total_s``: all of
    it; ``result_nbytes``: the result's pickle."""

    value: T
    report: SessionReport | None
    pid: int
    start_s: float
    run_s: float
    transfer_s: float
    exit_s: float
    total_s: float
    result_nbytes: int


@dataclass(frozen=True)
class _ByName:
    """A module-level function sent by name; the child imports it."""

    module: str
    qualname: str

    def resolve(self) -> Callable[..., Any]:
        obj: Any = importlib.import_module(self.module)
        for part in self.qualname.split("."):
            obj = getattr(obj, part)
        if getattr(obj, ISOLATED_MARK, False):
            obj = obj.__wrapped__
        return obj  # type: ignore[no-any-return]


def reference(fn: Callable[..., Any]) -> _ByName:
    """``fn`` by name, for a function whose module-level name is bound to a wrapper."""
    module, qualname = getattr(fn, "__module__", None), getattr(fn, "__qualname__", None)
    if not module or not qualname or "<locals>" in qualname or "<lambda>" in qualname:
        detail = f"{fn!r} is not reachable by name from its module; define it at module level"
        raise NotPicklable("function", detail)
    return _ByName(module, qualname)


def _dumps(what: str, obj: object) -> bytes:
    try:
        return pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL)
    except Exception as error:  # pickle raises PicklingError, TypeError, AttributeError...
        raise NotPicklable(what, f"{type(error).__name__}: {error}") from error


def _child(payload: bytes, conn: Connection) -> None:
    """The child's side: run the call in a session, send back one message, exit."""
    try:
        began = time.monotonic()
        fn_ref, args, kwargs, name, options, session_type = pickle.loads(payload)
        fn = fn_ref.resolve() if isinstance(fn_ref, _ByName) else fn_ref
        session = session_type(name, options=options)
        called = time.monotonic()
        try:
            with session:
                result = _call(fn, args, kwargs)
                session.keep(result)
        except BaseException as error:
            ended = time.monotonic()
            text = "".join(traceback.format_exception(error))
            try:
                body = dumps_result(error)
                pickle.loads(body)  # an exception that pickles but cannot be rebuilt is sent as text
            except Exception:
                body = None
            message: tuple[Any, ...] = ("raised", body, type(error).__qualname__, str(error), text)
        else:
            ended = time.monotonic()
            try:
                body = dumps_result(result)
                message = ("ok", body)
            except Exception as error:
                message = ("unpicklable", f"{type(result).__name__}: {type(error).__name__}: {error}")
            del result
        times = (began, called, ended)
        conn.send_bytes(pickle.dumps((*message, times, session.report), protocol=pickle.HIGHEST_PROTOCOL))
    finally:
        conn.close()


def _call(fn: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    import inspect

    if inspect.iscoroutinefunction(fn):
        import asyncio

        return asyncio.run(fn(*args, **kwargs))
    return fn(*args, **kwargs)


def _crashed(process: Any, name: str) -> ChildCrashed:
    code = process.exitcode
    if code is not None and code < 0:
        try:
            signal_name: str | None = signal.Signals(-code).name
        except ValueError:
            signal_name = f"signal {-code}"
        return ChildCrashed(
            f"the isolated child running {name} (pid {process.pid}) was killed by {signal_name}",
            exitcode=code,
            signal_name=signal_name,
        )
    return ChildCrashed(
        f"the isolated child running {name} (pid {process.pid}) exited with status {code} before answering",
        exitcode=code,
        signal_name=None,
    )


def run_isolated(
    fn: Callable[..., Any] | _ByName,
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
    *,
    name: str,
    options: SessionOptions,
    timeout_s: float | None = None,
    session_type: type[GpuSession] = GpuSession,
) -> Isolated[Any]:
    """Run ``fn(*args, **kwargs)`` in a ``session_type`` session with ``options`` in a spawned
    child (the class goes by reference: the child imports it, so this module names no other)."""
    try:
        pickle.dumps(fn, protocol=pickle.HIGHEST_PROTOCOL)
    except Exception:
        if isinstance(fn, _ByName):
            raise
        fn = reference(fn)
    _dumps("function", fn)
    _dumps("arguments", (args, kwargs))
    payload = _dumps("call", (fn, args, kwargs, name, options, session_type))
    context = multiprocessing.get_context("spawn")
    reader, writer = context.Pipe(duplex=False)
    process = context.Process(target=_child, args=(payload, writer), name=f"vramguard-isolated {name}")
    began = time.monotonic()
    pid = -1
    try:
        process.start()
        pid = process.pid or -1
        writer.close()  # the child holds the only writer: its death reads as end-of-file here
        deadline = None if timeout_s is None else began + timeout_s
        raw: bytes | None = None
        while raw is None:
            left = None if deadline is None else max(0.0, deadline - time.monotonic())
            ready = wait([reader, process.sentinel], timeout=left)
            if not ready:
                raise IsolationError(f"the isolated child running {name} gave no answer in {timeout_s} s; killed")
            if reader in ready or reader.poll():
                try:
                    raw = reader.recv_bytes()
                except EOFError:
                    process.join()
                    raise _crashed(process, name) from None
            elif process.exitcode is not None:
                raise _crashed(process, name)
        answer = pickle.loads(raw)
        value: Any = None
        if answer[0] == "ok":
            try:
                value = pickle.loads(answer[1])
            except Exception as failure:  # pickled in the child, but its class is not importable here
                detail = f"not rebuilt here: {type(failure).__name__}: {failure}"
                raise NotPicklable("result", detail) from failure
        received = time.monotonic()
        process.join()  # the child exits once it has answered: its memory and context are back
        exited = time.monotonic()
    finally:
        reader.close()
        writer.close()
        if process.is_alive():
            process.kill()
            process.join()
        process.close()
    kind, *rest = answer
    child_began, called, ended = rest[-2]
    report: SessionReport | None = rest[-1]
    del child_began
    if kind == "raised":
        body, type_name, text, child_traceback = rest[:4]
        if body is None:
            raise IsolationError(
                f"the isolated call raised {type_name}: {text} (not picklable, sent as text); "
                f"the child's traceback:\n{child_traceback}"
            )
        error: BaseException = pickle.loads(body)
        add_note(error, f"raised in the isolated child process; its traceback:\n{child_traceback}")
        raise error
    if kind == "unpicklable":
        raise NotPicklable("result", rest[0])
    return Isolated(
        value=value,
        report=report,
        pid=pid,
        start_s=called - began,
        run_s=ended - called,
        transfer_s=received - ended,
        exit_s=exited - received,
        total_s=exited - began,
        result_nbytes=len(rest[0]),
    )


def isolated(
    fn: Callable[..., T], /, *args: Any, device: Any = "auto", timeout_s: float | None = None, **kwargs: Any
) -> Isolated[T]:
    """Run ``fn(*args, **kwargs)`` in a spawned child process, in a session on ``device``;
    returns an :class:`Isolated` (``.value``, the child's ``.report``, the costs). When it
    returns, everything the child held is back, its CUDA context included. CUDA tensors in the
    value come back on the CPU (moved in the child), so this process never calls into CUDA.

    The child's exception is re-raised here with the child's traceback in a note; a child that
    is killed or crashes raises :class:`~vramguard.ChildCrashed`; an argument, result or
    exception that cannot be pickled raises :class:`~vramguard.NotPicklable` (functions must be
    importable by name: defined at module level). ``timeout_s`` (None: wait for ever) kills a
    child that has not answered. Scripts calling it need the ``if __name__ == "__main__":``
    guard that the spawn start method always needs.
    """
    if not callable(fn):
        raise InvalidArgument("fn", fn, "a function (defined at module level) to run in a child process")
    if timeout_s is not None and (
        isinstance(timeout_s, bool) or not isinstance(timeout_s, (int, float)) or not timeout_s > 0
    ):
        raise InvalidArgument("timeout_s", timeout_s, "None or a number of seconds > 0")
    from vramguard.probes import resolve_device

    dev = str(resolve_device(device))
    name = getattr(fn, "__qualname__", type(fn).__name__)
    options = SessionOptions.from_arguments(device=dev, leaks="ignore", census=False)
    return run_isolated(fn, args, dict(kwargs), name=name, options=options, timeout_s=timeout_s)


def isolate_decorated(
    fn: Callable[..., Any], name: str, options: SessionOptions, session_type: type[GpuSession] = GpuSession
) -> Callable[..., Any]:
    """``gpu_session(isolate=True)(fn)``: each call runs ``fn`` in a child, in a session with
    ``options``; the wrapper returns the value and sets ``vram_report`` to the child's report."""
    import functools
    import inspect

    target = reference(fn)  # checked now: a nested function fails at decoration, not at the first call

    if inspect.iscoroutinefunction(fn):
        import asyncio

        @functools.wraps(fn)
        async def async_wrapper(*args: Any, **kwargs: Any) -> Any:
            loop = asyncio.get_running_loop()
            call = functools.partial(
                run_isolated, target, args, kwargs, name=name, options=options, session_type=session_type
            )
            outcome = await loop.run_in_executor(None, call)
            async_wrapper.vram_report = outcome.report  # type: ignore[attr-defined]
            return outcome.value

        wrapper: Any = async_wrapper
    else:

        @functools.wraps(fn)
        def sync_wrapper(*args: Any, **kwargs: Any) -> Any:
            outcome = run_isolated(target, args, kwargs, name=name, options=options, session_type=session_type)
            sync_wrapper.vram_report = outcome.report  # type: ignore[attr-defined]
            return outcome.value

        wrapper = sync_wrapper
    wrapper.vram_report = None
    setattr(wrapper, ISOLATED_MARK, True)
    return wrapper  # type: ignore[no-any-return]
