"""Group commit: one write for many waiting callers, each told that write's outcome.

Ingest's committer, the outbox's outcome marks and the JSON-lines writer each gather the
callers that arrive while a write is running and write them together; `settle` runs the
write and resolves every caller's future with its result (or its exception).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Sequence


async def settle(write: Awaitable[object], waiters: Sequence[asyncio.Future[None]]) -> bool:
    """Await `write`, then resolve each waiter still pending: with None when it succeeded,
    with its exception when it failed. Returns whether it succeeded."""
    try:
        await write
    except Exception as exc:
        for future in waiters:
            if not future.done():
                future.set_exception(exc)
        return False
    for future in waiters:
        if not future.done():
            future.set_result(None)
    return True
