"""Message rendering: one compiled message plus the send's variables -> the content to deliver.

Runs when the send is decided (RUNTIME.md section 4): the result is stored on the outbox row,
so every retry delivers the same bytes. Templates are Jinja2 in the sandbox of
`leadlang.interpreter.templates.template_environment` (the one `check` compiles them with);
`html` also autoescapes. A variable that has no value renders empty, as `check` assumes;
reaching for an unsafe attribute (`''.__class__`) or changing a variable (`tags.append`) is an
error, never an empty string. Any failure is a `RenderError`, which dead-letters the row.

Content per channel:
  email: {"subject", "text", "html", "from"?, "reply_to"?}  (text or html may be None; the
         driver derives an html-only message's text part with `html_to_text`)
  sms:   {"text"}
  push:  {"url", "headers", "json", "title"?, "text"?}  (strings in headers/json are templates)
"""

from __future__ import annotations

import re
from functools import cache
from html import unescape
from html.parser import HTMLParser
from pathlib import Path
from typing import Any, NoReturn

from jinja2 import Template, Undefined
from jinja2.exceptions import SecurityError
from jinja2.sandbox import SandboxedEnvironment, modifies_known_mutable

from leadlang.interpreter.templates import template_environment
from leadlang.source import read_file


class RenderError(Exception):
    """A message could not be rendered; `message` says why, for the dead-letter row."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class _Undefined(Undefined):
    """Missing values render empty; an unsafe attribute the sandbox refused raises."""

    __slots__ = ()

    def _refuse_unsafe(self) -> None:
        if self._undefined_exception is SecurityError:
            self._fail_with_undefined_error()

    def __str__(self) -> str:
        self._refuse_unsafe()
        return ""

    def __iter__(self) -> Any:
        self._refuse_unsafe()
        return iter(())

    def __bool__(self) -> bool:
        self._refuse_unsafe()
        return False

    def __len__(self) -> int:
        self._refuse_unsafe()
        return 0


@cache
def _environment(html: bool) -> SandboxedEnvironment:
    # (`finalize`: what a template prints of the profile or the event cannot spell a secret's
    # placeholder; its literal text, where the compiler puts them, is not touched. Imported
    # here: the drivers' package imports this module.)
    from leadlang.runtime.delivery.drivers.placeholders import defused

    env = template_environment().overlay(autoescape=html, undefined=_Undefined, finalize=defused)
    assert isinstance(env, SandboxedEnvironment)
    # The variables are the profile the engine keeps: as in ImmutableSandboxedEnvironment, a
    # template may not change a list, dict or set (`{{ tags.append("x") }}`).
    sandbox_allows = env.is_safe_attribute

    def is_safe_attribute(obj: Any, attr: str, value: Any) -> bool:
        return sandbox_allows(obj, attr, value) and not modifies_known_mutable(obj, attr)

    env.is_safe_attribute = is_safe_attribute  # type: ignore[method-assign]
    return env


@cache
def _template(text: str, html: bool) -> Template:
    return _environment(html).from_string(text)


@cache
def _file_text(path: Path) -> str:
    return read_file(path).decode("utf-8")


def clear_template_cache() -> None:
    """Forget the template files read and compiled so far (after a reload)."""
    _file_text.cache_clear()
    _template.cache_clear()


def render_message(message: dict[str, Any], variables: dict[str, Any]) -> dict[str, Any]:
    """The content of one message of the compiled program for these variables."""
    renderer = _Renderer(message, variables)
    channel = message.get("channel")  # (the compiler always writes it: email, sms or push)
    if channel == "email":
        html = renderer.text("html", html=True)
        text = renderer.text("text")
        # (an html-only message's text part is derived from the html at delivery, by the
        # driver: `html_to_text` is a pure function of what is stored, so every retry still
        # delivers the same bytes, and deciding a send stays cheap)
        content: dict[str, Any] = {
            "subject": renderer.text("subject") or "",
            "text": text,
            "html": html,
        }
        for name in ("from", "reply_to"):
            value = renderer.text(name)
            if value and value.strip():
                content[name] = value.strip()
        return content
    if channel == "sms":
        return {"text": renderer.text("text")}  # (check requires an SMS's text: F006)
    if channel == "push":
        content = {
            "url": (renderer.text("url") or "").strip() or None,
            "headers": renderer.data("headers") or {},
            "json": renderer.data("json"),
        }
        for name in ("title", "text"):
            value = renderer.text(name)
            if value is not None:
                content[name] = value
        return content
    raise RenderError(f"unknown channel `{channel}`")


class _Renderer:
    def __init__(self, message: dict[str, Any], variables: dict[str, Any]) -> None:
        self.fields: dict[str, Any] = message["fields"]  # (a compiled message has both)
        self.folder = Path(message["dir"])
        self.variables = variables

    def text(self, name: str, html: bool = False) -> str | None:
        field = self.fields.get(name)
        if field is None:
            return None
        value = field["value"]  # a text: check takes only a quoted string in these fields
        if field.get("file"):
            path = self.folder / str(value)
            try:
                value = _file_text(path)
            except (OSError, UnicodeDecodeError) as error:
                raise RenderError(f"`{name}`: cannot read template `{path}`: {error}") from None
        return self._render(name, value, html)

    def data(self, name: str) -> Any:
        field = self.fields.get(name)
        if field is None:
            return None
        return self._walk(name, field.get("value"))

    def _walk(self, name: str, value: Any) -> Any:
        if isinstance(value, str):
            return self._render(name, value, False)
        if isinstance(value, dict) and len(value) == 1 and "$value" in value:
            return value["$value"]  # an expression's value, evaluated by the daemon: as it is
        if isinstance(value, dict):
            return {key: self._walk(name, item) for key, item in value.items()}
        if isinstance(value, list):
            return [self._walk(name, item) for item in value]
        return value

    def _render(self, name: str, text: str, html: bool) -> str:
        if "{" not in text:  # no template syntax: what Jinja would write (its lines end "\n")
            return _LINE_END.sub("\n", text) if "\r" in text else text
        try:
            return _template(text, html).render(self.variables)
        except RecursionError:
            _fail(name, "the template nests too deeply")
        except Exception as error:  # template errors and whatever a filter raised
            _fail(name, f"{type(error).__name__}: {error}")


_LINE_END = re.compile(r"\r\n?")  # Jinja's newline_sequence "\n" for "\r\n" and "\r"


def _fail(name: str, reason: str) -> NoReturn:
    raise RenderError(f"`{name}` does not render: {reason}")


# -- html to text ------------------------------------------------------------------------------

_SKIP = frozenset({"script", "style", "head", "title", "noscript", "template"})
_BLOCK = frozenset(
    {
        "p", "div", "section", "article", "header", "footer", "main", "nav", "aside",
        "table", "tr", "ul", "ol", "dl", "blockquote", "pre", "form", "figure",
        "h1", "h2", "h3", "h4", "h5", "h6",
    }
)  # fmt: skip
_LINK_SCHEMES = ("http://", "https://", "mailto:")
_SPACES = re.compile(r"[ \t\r\n\f\v]+")  # not \s: a non-breaking space stays one


class _TextParser(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self.skipping = 0
        self.pre = 0
        self.links: list[str | None] = []
        self.link_start: list[int] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in _SKIP:
            self.skipping += 1
        elif tag in _BLOCK:
            self.parts.append("\n\n")
            self.pre += tag == "pre"
        elif tag == "br":
            self.parts.append("\n")
        elif tag == "li":
            self.parts.append("\n- ")
        elif tag in ("td", "th"):
            self.parts.append(" ")
        elif tag == "hr":
            self.parts.append("\n\n---\n\n")
        elif tag == "img":
            alt = dict(attrs).get("alt")
            if alt and not self.skipping:
                self.parts.append(f" {alt} ")
        elif tag == "a":
            self.links.append(dict(attrs).get("href"))
            self.link_start.append(len(self.parts))

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag not in _SKIP and tag != "a":
            self.handle_starttag(tag, attrs)

    def handle_endtag(self, tag: str) -> None:
        if tag in _SKIP:
            self.skipping = max(0, self.skipping - 1)
        elif tag in _BLOCK:
            self.parts.append("\n\n")
            self.pre = max(0, self.pre - (tag == "pre"))
        elif tag == "a" and self.links:
            href = (self.links.pop() or "").strip()
            start = self.link_start.pop()
            label = "".join(self.parts[start:]).strip()
            if href.lower().startswith(_LINK_SCHEMES) and href != label:
                shown = href[7:] if href.lower().startswith("mailto:") else href
                if shown != label:
                    self.parts.append(f" ({shown})" if label else shown)

    def handle_data(self, data: str) -> None:
        if self.skipping:
            return
        self.parts.append(data if self.pre else _SPACES.sub(" ", data))


# The common shape of an email's HTML, tokenized in one regular expression: text, start tags
# whose attributes are plainly written, end tags and a doctype. For text in that shape
# `_TextParser` gets exactly the calls `HTMLParser` would make, 1.6 to 2 times as fast; any
# other markup (comments, `<script>`/`<style>` content, an unquoted value touching `/>`, a
# stray `<`, ...) goes to `HTMLParser` whole. (tests/test_delivery_render.py checks the two
# give the same text on generated HTML.)
_WS = "[ \t\n\r\f]"
_NAME = "[a-zA-Z_:][-a-zA-Z0-9_:.]*"
_VALUE = f"\"[^\"]*\"|'[^']*'|[^\\s\"'=<>`/]+(?={_WS}|>|$)"
_ATTRS = re.compile(f"({_NAME})(?:{_WS}*={_WS}*({_VALUE}))?")  # (its name, its value)
_TOKEN = re.compile(
    "([^<]+)"  # text
    f"|<([a-zA-Z][a-zA-Z0-9]*)((?:{_WS}+{_NAME}(?:{_WS}*={_WS}*(?:{_VALUE}))?)*){_WS}*(/?)>"
    f"|</([a-zA-Z][a-zA-Z0-9]*){_WS}*>"  # an end tag
    "|<![dD][oO][cC][tT][yY][pP][eE][^>]*>"  # a doctype
)
_RAW_TEXT = frozenset({"script", "style"})  # HTMLParser reads their content as text


def _fast_feed(parser: _TextParser, html: str) -> bool:
    """Feed `html` to `parser` token by token; False (the parser half fed: discard it) at the
    first piece outside the shape above."""
    at, end = 0, len(html)
    match = _TOKEN.match
    while at < end:
        token = match(html, at)
        if token is None:
            return False
        at = token.end()
        data, tag, attrs, slash, closing = token.group(1, 2, 3, 4, 5)
        if data is not None:
            parser.handle_data(unescape(data) if "&" in data else data)
        elif tag is not None:
            tag = tag.lower()
            if tag in _RAW_TEXT:
                return False
            pairs = [(name.lower(), _attr_value(value)) for name, value in _ATTRS.findall(attrs)]
            if slash:
                parser.handle_startendtag(tag, pairs)
            else:
                parser.handle_starttag(tag, pairs)
        elif closing is not None:
            parser.handle_endtag(closing.lower())
    return True


def _attr_value(raw: str) -> str | None:
    """An attribute's value as HTMLParser gives it (None when it has none)."""
    if not raw:
        return None
    if raw[0] in "\"'":
        raw = raw[1:-1]
    return unescape(raw) if raw and "&" in raw else raw


def html_to_text(html: str) -> str:
    """A readable plain-text part for an HTML email: paragraphs, line breaks, list items,
    links as `label (url)`; scripts, styles and the head dropped; entities decoded."""
    parser = _TextParser()
    if not _fast_feed(parser, html):
        parser = _TextParser()
        parser.feed(html)
        parser.close()
    return _text(parser.parts)


def _text(parts: list[str]) -> str:
    """The text part from what `_TextParser` collected."""
    lines = [line.strip() for line in "".join(parts).split("\n")]
    text = "\n".join(lines)
    text = re.sub(r"\n{3,}", "\n\n", text)
    text = re.sub(r"[ \t]{2,}", " ", text)
    return text.strip() + "\n" if text.strip() else ""
