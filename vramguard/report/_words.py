"""The words a figure is shown with, by device: defined in :mod:`vramguard.core._words` (a
record's own ``str()`` uses them too), re-exported for the renderers."""

from __future__ import annotations

from vramguard.core._words import CUDA as CUDA
from vramguard.core._words import HOST as HOST
from vramguard.core._words import Words as Words
from vramguard.core._words import is_host as is_host
from vramguard.core._words import words_for as words_for
