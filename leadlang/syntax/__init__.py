"""The syntax pass: `.lead` text to the AST, with syntax problems as S-code diagnostics.

`lexer` (tokens and indentation layout) -> `parser` (the Lark LALR driver and error
recovery) -> `build` (Lark callbacks that make `ast` nodes); `messages` puts parse errors
into words. `parse(source)` is the entry point.
"""

from leadlang.syntax.parser import GRAMMAR_PATH, get_parser, parse

__all__ = ["GRAMMAR_PATH", "get_parser", "parse"]
