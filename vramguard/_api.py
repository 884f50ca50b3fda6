"""``gpu_session``: the public shortcut that builds a session's settings once and picks the
session for them (the core's :class:`GpuSession`, a multi-device one, or the resilience
package's hard-budget and isolated forms). It sits above the core and the resilience package,
so neither imports the other."""

from __future__ import annotations

from vramguard.core._session import gpu_session

__all__ = ["gpu_session"]
