"""Passes after parsing: resolve names, check types, lint, compile to the machine IR."""
