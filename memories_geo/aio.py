"""Awaitable twins of the module functions: ``await mg.aio.save(ds, "key")``.

Each runs its blocking twin (:mod:`memories_geo.api`) in a worker thread, so an event
loop (Jupyter's, a web server's) keeps running meanwhile. ``Memory`` has the same twins
as methods (``await mem.asave(...)``), and so do checkpoints
(``await mem.checkpoints.asave(...)``), the monitor and the original API's persistence
classes.

Examples
--------
>>> import memories_geo as mg
>>> entry = await mg.aio.save(ds, "era5/t2m")  # doctest: +SKIP
>>> ds = await mg.aio.open("era5/t2m", bbox=(5, 45, 6, 46))  # doctest: +SKIP
"""

from __future__ import annotations

from memories_geo import api
from memories_geo.awaitable import awaitable_twin

__all__ = [
    "audit", "delete", "info", "ls", "open", "recover", "request_restore", "restore_status", "save",
    "search", "verify", "versions",
]

save = awaitable_twin(api.save)
open = awaitable_twin(api.open)
search = awaitable_twin(api.search)
ls = awaitable_twin(api.ls)
info = awaitable_twin(api.info)
versions = awaitable_twin(api.versions)
delete = awaitable_twin(api.delete)
verify = awaitable_twin(api.verify)
recover = awaitable_twin(api.recover)
audit = awaitable_twin(api.audit)
request_restore = awaitable_twin(api.request_restore)
restore_status = awaitable_twin(api.restore_status)
