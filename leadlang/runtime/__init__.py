"""Running compiled programs: engine, clock, store, simulate (and later serve)."""
