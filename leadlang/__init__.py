"""leadlang: marketing automation as code (lead scoring, segments, messages and flows)."""

__version__ = "0.1.0"
