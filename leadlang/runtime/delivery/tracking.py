"""Tracking and consent links (RUNTIME.md sections 2 and 3): signed tokens and HTML rewriting.

Pure functions of their inputs, so the processor can run them in its thread and every
retry of a send delivers the same bytes.

A token is `BASE64(JSON payload).BASE64(HMAC-SHA256)`, signed with itsdangerous's `Signer`
keyed by the daemon's stored `secret`, with one salt (so one derived key) per purpose: an
open token is no click token and neither unsubscribes. (Not its `URLSafeSerializer`: that
tries zlib on every payload, half the cost of a token, for nothing on payloads this small.)
The payload names the contact, the send (its idempotency key), the channel and the message,
and for a click the link's index and URL: nothing in a request can change whom or where a
token acts for. Tokens are signed, not encrypted: whoever holds the email can read the
contact id and the link, which is the recipient.

HTML is rewritten with the standard library's tokenizer (`html.parser`), using its own
attribute regular expressions on each `<a>` start tag it reports, and edits are spliced
into the original text at the positions it reports: everything else stays byte for byte,
and `<a` inside comments, scripts or attribute values is never taken for a link.
"""

from __future__ import annotations

import hashlib
import html
import html.entities
import html.parser
import re
from collections.abc import Callable
from typing import Any, Literal

import attrs
import orjson
from itsdangerous import BadData, Signer
from itsdangerous.encoding import base64_decode, base64_encode

Purpose = Literal["open", "click", "unsubscribe"]
PURPOSES: tuple[Purpose, ...] = ("open", "click", "unsubscribe")
UNSUBSCRIBE_PLACEHOLDER = "leadlang:unsubscribe"  # `<a href="leadlang:unsubscribe">` in html
ONE_CLICK = "List-Unsubscribe=One-Click"  # RFC 8058
_TRACKED_SCHEMES = ("http://", "https://")
_URL_WHITESPACE = re.compile(r"[\t\n\r]")  # browsers drop these from a URL (WHATWG URL)
_CONTROL = re.compile(r"[\x00-\x20\x7f]")


@attrs.frozen
class Send:
    """What a token is bound to: one send to one contact."""

    contact: str
    key: str  # the send's idempotency key (the outbox row's key, `message_id` in events)
    channel: str
    message: str


@attrs.frozen
class Link:
    """A verified token: the send, and for a click the link's index and URL."""

    purpose: Purpose
    send: Send
    index: int | None = None
    url: str | None = None


class Tracker:
    """Makes and reads the tokens of one daemon, and the links that carry them."""

    def __init__(self, secret: str, public_url: str) -> None:
        if not secret:
            raise ValueError("tracking needs a secret")
        self.public_url = public_url.rstrip("/")
        self._signers = {
            purpose: Signer(secret, salt=f"leadlang.{purpose}", digest_method=hashlib.sha256)
            for purpose in PURPOSES
        }

    # ---------------------------------------------------------------- tokens

    def token(self, purpose: Purpose, send: Send, index: int | None = None, url: str = "") -> str:
        payload: list[Any] = [send.contact, send.key, send.channel, send.message]
        if purpose == "click":
            payload += [index, url]
        return self._signers[purpose].sign(base64_encode(orjson.dumps(payload))).decode()

    def read(self, purpose: Purpose, token: str) -> Link | None:
        """The link a token stands for; None when it is not one this daemon signed for
        `purpose` (forged, altered, truncated, or made for another purpose)."""
        if not _canonical(token):
            return None
        try:
            payload = orjson.loads(base64_decode(self._signers[purpose].unsign(token)))
        except (BadData, ValueError):  # a bad signature or base64; bytes that are no JSON
            return None
        size = 6 if purpose == "click" else 4
        if not isinstance(payload, list) or len(payload) != size:
            return None
        if not all(isinstance(part, str) for part in payload[:4]):
            return None
        send = Send(*payload[:4])
        if purpose != "click":
            return Link(purpose, send)
        index, url = payload[4], payload[5]
        if not isinstance(index, int) or isinstance(index, bool) or not isinstance(url, str):
            return None
        if not is_trackable(url):
            return None
        return Link(purpose, send, index, url)

    def url(self, purpose: Purpose, send: Send, index: int | None = None, url: str = "") -> str:
        route = {"open": "o", "click": "c", "unsubscribe": "u"}[purpose]
        return f"{self.public_url}/{route}/{self.token(purpose, send, index, url)}"

    # ---------------------------------------------------------------- emails

    def decorate_email(self, content: dict[str, Any], send: Send) -> dict[str, Any]:
        """The email's content with its html rewritten (click links, the open pixel, the
        unsubscribe placeholder), the placeholder in its text replaced, and the
        List-Unsubscribe headers (RFC 2369, RFC 8058)."""
        unsubscribe = self.url("unsubscribe", send)
        out = dict(content)
        if out.get("html"):
            out["html"] = rewrite_html(
                out["html"],
                click_url=lambda index, url: self.url("click", send, index, url),
                pixel_url=self.url("open", send),
                unsubscribe_url=unsubscribe,
            )
        if out.get("text"):  # plain text has no links to rewrite, only the placeholder
            out["text"] = out["text"].replace(UNSUBSCRIBE_PLACEHOLDER, unsubscribe)
        headers = dict(out.get("headers") or {})
        headers["List-Unsubscribe"] = f"<{unsubscribe}>"
        headers["List-Unsubscribe-Post"] = ONE_CLICK
        out["headers"] = headers
        return out


def _canonical(token: str) -> bool:
    """Each base64 part of the token exactly as it would be written. Base64 leaves a few
    bits of a part's last character unused, so without this check some one-character
    changes would decode to the same bytes and still verify."""
    parts = token.split(".")
    if len(parts) != 2 or not all(parts):
        return False
    try:
        return all(base64_encode(base64_decode(part)) == part.encode() for part in parts)
    except (BadData, ValueError):  # (a lone surrogate's UnicodeEncodeError is a ValueError)
        return False


def is_trackable(url: str) -> bool:
    """An absolute http(s) URL with a host and nothing a Location header cannot carry."""
    lower = url.lower()
    if not lower.startswith(_TRACKED_SCHEMES):
        return False
    rest = url.split("://", 1)[1]
    return bool(rest) and rest[0] not in "/\\" and not _URL_WHITESPACE.search(url)


def clean_href(value: str) -> str:
    """An href as a browser follows it: outer spaces and any tab or newline dropped."""
    return _URL_WHITESPACE.sub("", value.strip(" \t\n\r\f"))


def location(url: str) -> str:
    """`url` for a Location header: control characters, spaces and non-ASCII percent-encoded
    (what a browser would send), everything else as it was."""
    return "".join(
        "".join(f"%{b:02X}" for b in ch.encode()) if _CONTROL.match(ch) or ord(ch) > 126 else ch
        for ch in url
    )


# ---------------------------------------------------------------- html


class _Scanner(html.parser.HTMLParser):
    """Finds, by offset into the text, each `<a>` href value and the last `</body>`."""

    def __init__(self, text: str) -> None:
        super().__init__(convert_charrefs=True)
        self.text = text
        self.line_starts = [0] + [m.end() for m in re.finditer("\n", text)]
        self.hrefs: list[tuple[int, int, str]] = []  # (start, end, unescaped value)
        self.body_end: int | None = None

    def _offset(self) -> int:
        line, column = self.getpos()
        return self.line_starts[line - 1] + column

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag != "a":
            return
        raw = self.get_starttag_text()
        start = self._offset()
        if raw is None or self.text[start : start + len(raw)] != raw:
            return  # positions out of step: leave this link alone rather than guess
        found = _href_span(raw)
        href = next((value for name, value in attrs if name == "href"), None)
        if found is not None and (html.unescape(found[2]) if found[2] else None) == href:
            # the very attribute the parser saw, decoded as a browser decodes it
            self.hrefs.append((start + found[0], start + found[1], unescape_attribute(found[2])))

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.handle_starttag(tag, attrs)

    def handle_endtag(self, tag: str) -> None:
        if tag == "body":
            self.body_end = self._offset()


# html.parser's own patterns for a start tag's name and attributes, so a value is found where
# the parser found it; the Python 3.11 ones should a later version rename them
_TAG_NAME = getattr(
    html.parser, "tagfind_tolerant", re.compile(r"([a-zA-Z][^\t\n\r\f />\x00]*)(?:\s|/(?!>))*")
)
_ATTRIBUTE = getattr(
    html.parser,
    "attrfind_tolerant",
    re.compile(
        r'((?<=[\'"\s/])[^\s/>][^\s/=>]*)(\s*=+\s*'
        r'(\'[^\']*\'|"[^"]*"|(?![\'"])[^>\s]*))?(?:\s|/(?!>))*'
    ),
)


def _href_span(raw: str) -> tuple[int, int, str] | None:
    """The first `href` attribute's value in one start tag: (start, end, value as written),
    the span including its quotes. Walks the attributes exactly as `html.parser` does."""
    match = _TAG_NAME.match(raw, 1)
    if match is None:
        return None
    k = match.end()
    while k < len(raw):
        m = _ATTRIBUTE.match(raw, k)
        if not m:
            return None
        name, rest, value = m.group(1, 2, 3)
        if name.lower() == "href":
            if not rest:
                return None
            if value[:1] in ("'", '"') and value[:1] == value[-1:] and len(value) >= 2:
                value = value[1:-1]
            return m.start(3), m.end(3), value
        k = m.end()
    return None


_CHARREF = re.compile(r"&(#[0-9]+;?|#[xX][0-9a-fA-F]+;?|[^\t\n\f <&#;]{1,32};?)")


def unescape_attribute(value: str) -> str:
    """An attribute value's character references decoded as a browser decodes them (HTML
    standard, "named character reference state"): like `html.unescape`, except that a
    named reference without its `;` followed by `=` or a letter or digit stays as written,
    so `?a=1&region=eu` keeps its `&reg` (`html.unescape` makes it `®ion=eu`)."""

    def replace(match: re.Match[str]) -> str:
        name = match.group(1)
        if name[0] == "#" or (name.endswith(";") and name in html.entities.html5):
            return html.unescape(match.group(0))
        for end in range(len(name), 1, -1):  # the longest name, as html.unescape takes it
            if name[:end] in html.entities.html5:  # here a legacy name, without its `;`
                following = name[end : end + 1]
                if following == "=" or following.isalnum():
                    return match.group(0)
                return html.entities.html5[name[:end]] + name[end:]
        return match.group(0)

    return _CHARREF.sub(replace, value)


def rewrite_html(
    text: str,
    click_url: Callable[[int, str], str],
    pixel_url: str | None,
    unsubscribe_url: str | None,
) -> str:
    """`text` with each `<a href="http(s)://...">` pointing at `click_url(index, url)`
    (index: 0, 1, ... in document order), `href="leadlang:unsubscribe"` at `unsubscribe_url`,
    and a 1x1 image of `pixel_url` before the last `</body>` (else at the end). Other links
    (`mailto:`, `tel:`, `#...`, relative) and every other byte are left as they were."""
    scanner = _Scanner(text)
    try:
        scanner.feed(text)
        scanner.close()
    except Exception:
        # html.parser gives up on some broken markup (`<![foo[` raises AssertionError):
        # what it found before that is right, the rest is left untouched; an email is
        # better sent with fewer tracked links than not at all
        scanner.body_end = None
    edits: list[tuple[int, int, str]] = []
    index = 0
    for start, end, value in scanner.hrefs:
        href = clean_href(value)
        if unsubscribe_url is not None and href.lower() == UNSUBSCRIBE_PLACEHOLDER:
            edits.append((start, end, _quoted(unsubscribe_url)))
        elif is_trackable(href):
            edits.append((start, end, _quoted(click_url(index, href))))
            index += 1
    if pixel_url is not None:
        at = scanner.body_end if scanner.body_end is not None else len(text)
        pixel = (
            f'<img src="{html.escape(pixel_url)}" width="1" height="1" alt="" '
            'style="display:block;border:0;width:1px;height:1px">'
        )
        edits.append((at, at, pixel))
    pieces: list[str] = []
    done = 0
    for start, end, replacement in sorted(edits, key=lambda e: e[0]):
        pieces += (text[done:start], replacement)
        done = end
    pieces.append(text[done:])
    return "".join(pieces)


def _quoted(url: str) -> str:
    return '"' + html.escape(url, quote=True) + '"'
