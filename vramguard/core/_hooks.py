"""Listeners that higher layers (the census, the timeline) attach to core events.

The core calls them; it never imports who listens. Listeners must be cheap and never raise.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

EmptyCacheListener = Callable[[torch.device, int], None]
"""Called with (device, stack depth to the user's call site) whenever vramguard.empty_cache runs."""

empty_cache_listeners: list[EmptyCacheListener] = []
