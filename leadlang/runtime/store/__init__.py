"""Where serve keeps everything: the SQL store (SQLite or PostgreSQL) and an in-memory one.

`schema` declares the tables, `migrations/` evolves them (Alembic, run at start-up), `sql`
holds every query serve makes; `memory` is the in-process store for code and tests.
"""

from leadlang.runtime.store.memory import MemoryStore, Store

__all__ = ["MemoryStore", "Store"]
