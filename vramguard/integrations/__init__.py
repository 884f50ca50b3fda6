"""vramguard where users already work: the Hugging Face Trainer, Lightning, notebooks, ASGI services.

Each integration is its own module, importing its framework when imported (each an optional
extra; a missing one raises :class:`vramguard.MissingDependency` naming what to install):

- :mod:`vramguard.integrations.transformers`: ``VramGuardCallback`` for ``transformers.Trainer``;
- :mod:`vramguard.integrations.lightning`: ``VramGuardCallback`` for Lightning's ``Trainer``;
- :mod:`vramguard.integrations.notebook`: the ``%%vram`` magics (``%load_ext vramguard``);
- :mod:`vramguard.integrations.asgi`: ``SessionMiddleware``, a session per request.
"""

from __future__ import annotations
