"""Park and wake: free a model's memory between uses and bring it back far faster than a load.

``park(model)`` moves its weights, buffers and gradients to host memory (``to="cpu"``), a
safetensors file (``"disk"``) or nowhere (``"discard"``) and frees the device memory; ``wake``
puts them back into the same tensor objects. Above the core and the census (it names the
holders that would keep parked memory alive), below the report, the faces and ``asr``.
"""

from __future__ import annotations

from vramguard._lazy import publish
from vramguard.parking._park import Parked, park, parked, parked_handle, wake
from vramguard.parking._records import ParkReport, Target

__all__ = ["ParkReport", "Parked", "Target", "park", "parked", "parked_handle", "wake"]

for _name in __all__:
    publish(__name__, globals()[_name])
