"""Output paths checked before any work starts: a run that takes an hour must not fail at the end
because ``--json`` names a missing folder."""

from __future__ import annotations

import os

from vramguard.core._errors import InvalidArgument


def check_output_file(option: str, path: str | os.PathLike[str] | None) -> None:
    """Raise :class:`InvalidArgument` (exit code 2, one line) unless ``path`` can be written as a
    file: its folder exists and is writable, and it is not a directory (nor a read-only file)."""
    if path is None:
        return
    text = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(text))
    problem = None
    if not text or os.path.isdir(text):
        problem = "it is a directory" if text else "it is empty"
    elif not os.path.isdir(folder):
        problem = f"the folder {folder} does not exist"
    elif os.path.exists(text) and not os.access(text, os.W_OK):
        problem = "the file is not writable"
    elif not os.path.exists(text) and not os.access(folder, os.W_OK | os.X_OK):
        problem = f"the folder {folder} is not writable"
    if problem is not None:
        raise InvalidArgument(option, text, f"a file path vramguard can write ({problem})")


def check_output_folder(option: str, path: str | os.PathLike[str] | None) -> None:
    """Like :func:`check_output_file` for a folder that is created if missing: an existing path
    must be a writable folder, a missing one needs a writable existing parent."""
    if path is None:
        return
    text = os.fspath(path)
    problem = None
    if os.path.exists(text):
        if not os.path.isdir(text):
            problem = "it is a file, not a folder"
        elif not os.access(text, os.W_OK | os.X_OK):
            problem = "the folder is not writable"
    else:
        parent = os.path.dirname(os.path.abspath(text))
        if not os.path.isdir(parent):
            problem = f"the folder {parent} does not exist"
        elif not os.access(parent, os.W_OK | os.X_OK):
            problem = f"the folder {parent} is not writable"
    if problem is not None:
        raise InvalidArgument(option, text, f"a folder vramguard can write into ({problem})")
