"""Park and wake: free a model's memory between uses and bring it back far faster than a load.

``park(model)`` moves its weights, buffers and gradients to host memory (``to="cpu"``), a
safetensors file (``"disk"``) or nowhere (``"discard"``) and frees the device memory; ``wake``
puts them back into the same tensor objects. Above the core and the census (it names the
holders that would keep parked memory alive), below the report, the faces and ``asr``.
"""

from __future__ import annotations

import typing

from vramguard import _lazy

# Each public name, written once: the module that defines it. Loaded on first use (see
# vramguard._lazy: an eager import here can deadlock across threads).
_LAZY = {
    "Parked": "vramguard.parking._park",
    "park": "vramguard.parking._park",
    "parked": "vramguard.parking._park",
    "parked_handle": "vramguard.parking._park",
    "wake": "vramguard.parking._park",
    "ParkReport": "vramguard.parking._records",
    "Target": "vramguard.parking._records",
}

if typing.TYPE_CHECKING:  # generated from _LAZY: tests/project/test_exported_members.py
    from vramguard.parking._park import Parked, park, parked, parked_handle, wake
    from vramguard.parking._records import ParkReport, Target

    __all__ = [
        "ParkReport",
        "Parked",
        "Target",
        "park",
        "parked",
        "parked_handle",
        "wake",
    ]
else:  # hidden from mypy, which then still flags unknown names
    __getattr__, __dir__, __all__ = _lazy.attach(__name__, _LAZY)
