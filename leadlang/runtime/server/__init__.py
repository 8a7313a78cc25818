"""`leadlang serve`'s HTTP side: the app factory, ingest, admin, metrics and its config."""
