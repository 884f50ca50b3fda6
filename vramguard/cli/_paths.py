"""Output paths checked before any work starts: a run that takes an hour must not fail at the end
because ``--json`` names a missing folder, a folder root may not write (``/sys``), or ``--plot``
a format matplotlib cannot draw.

Writability is tried, not asked: ``os.access`` says yes to root everywhere (Docker GPU users
mostly are root), so a file is created where the output will go and removed again.
"""

from __future__ import annotations

import os
import stat
import tempfile

from vramguard.core._errors import InvalidArgument, MissingDependency


def check_output_file(option: str, path: str | os.PathLike[str] | None) -> None:
    """Raise :class:`InvalidArgument` (exit code 2, one line) unless ``path`` can be written as a
    file: its folder exists, it is not a directory, and a file can be created there (or, when it
    exists, opened for writing; it is left as it was)."""
    if path is None:
        return
    text = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(text))
    problem = None
    if not text or os.path.isdir(text):
        problem = "it is a directory" if text else "it is empty"
    elif not os.path.isdir(folder):
        problem = f"the folder {folder} does not exist"
    else:
        problem = _try_file(text)
    if problem is not None:
        raise InvalidArgument(option, text, f"a file path vramguard can write ({problem})")


def check_plot_file(option: str, path: str | os.PathLike[str] | None) -> None:
    """:func:`check_output_file`, and the suffix one matplotlib can write (it picks the format by
    the suffix, and fails only once the figure is drawn). Without matplotlib,
    :class:`MissingDependency` says what to install."""
    if path is None:
        return
    text = os.fspath(path)
    try:
        from matplotlib.backend_bases import FigureCanvasBase
    except ImportError as error:
        raise MissingDependency("matplotlib", "plot", option) from error
    check_output_file(option, text)
    formats = sorted(FigureCanvasBase.get_supported_filetypes())
    suffix = os.path.splitext(text)[1].lstrip(".").lower()
    if suffix not in formats:
        names = ", ".join(f".{name}" for name in formats)
        raise InvalidArgument(option, text, f"an image file name ending in one of {names}")


def check_output_folder(option: str, path: str | os.PathLike[str] | None) -> None:
    """Like :func:`check_output_file` for a folder that is created if missing (with its missing
    parents): an existing path must be a folder a file can be created in; for a missing one, its
    nearest existing parent must be."""
    if path is None:
        return
    text = os.fspath(path)
    problem = None
    existing = os.path.abspath(text)
    while not os.path.exists(existing):
        existing = os.path.dirname(existing)
    if not os.path.isdir(existing):
        problem = "it is a file, not a folder" if existing == os.path.abspath(text) else f"{existing} is a file"
    else:
        problem = _try_folder(existing)
    if problem is not None:
        raise InvalidArgument(option, text, f"a folder vramguard can write into ({problem})")


def _try_file(path: str) -> str | None:
    """Why ``path`` cannot be written, or None: a new file is created and removed; an existing
    regular file is opened for appending (nothing written, so it stays as it was); anything else
    that exists (a pipe, a terminal, ``/dev/null``) is asked, since opening it may have effects."""
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        mode = None
    except OSError as error:
        return f"cannot read it: {error.strerror}"
    if mode is not None and not stat.S_ISREG(mode):
        return None if os.access(path, os.W_OK) else "it is not writable"
    try:
        if mode is None:
            os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644))
            os.unlink(path)
        else:
            os.close(os.open(path, os.O_WRONLY | os.O_APPEND))
    except OSError as error:
        return f"{'cannot create a file there' if mode is None else 'the file is not writable'}: {error.strerror}"
    return None


def _try_folder(folder: str) -> str | None:
    """Why no file can be created in ``folder``, or None (a temporary file is created and removed)."""
    try:
        descriptor, probe = tempfile.mkstemp(prefix=".vramguard-probe-", dir=folder)
    except OSError as error:
        return f"cannot create a file in {folder}: {error.strerror}"
    os.close(descriptor)
    os.unlink(probe)
    return None
