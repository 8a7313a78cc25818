"""Tracking tokens and HTML rewriting (leadlang.runtime.delivery.tracking), as pure functions:
tokens cannot be forged, altered or moved to another purpose, contact or link; rewriting
touches only the http(s) links and keeps every other byte."""

from __future__ import annotations

import hashlib
import re
import string
from pathlib import Path

import orjson
import pytest
from engine_run import run_text
from hypothesis import given, settings
from hypothesis import strategies as st
from itsdangerous import Signer
from itsdangerous.encoding import base64_decode, base64_encode

from leadlang.runtime.delivery.tracking import (
    PURPOSES,
    Link,
    Send,
    Tracker,
    is_trackable,
    location,
    rewrite_html,
)

pytestmark = pytest.mark.timeout(60)
TRACKER = Tracker("a secret of this daemon", "https://track.example/")
SEND = Send("alice", "0123456789abcdef0123456789abcdef", "email", "welcome")
URL = "https://shop.example/new?a=1&b=2"


def make(purpose: str) -> str:
    if purpose == "click":
        return TRACKER.token("click", SEND, 0, URL)
    return TRACKER.token(purpose, SEND)  # type: ignore[arg-type]


@pytest.mark.parametrize("purpose", PURPOSES)
def test_a_token_reads_back_as_what_it_was_made_for(purpose: str) -> None:
    token = make(purpose)
    link = TRACKER.read(purpose, token)  # type: ignore[arg-type]
    assert link is not None and link.send == SEND
    if purpose == "click":
        assert (link.index, link.url) == (0, URL)
    assert set(token) <= set(string.ascii_letters + string.digits + "-_.")


@pytest.mark.parametrize("purpose", PURPOSES)
def test_no_one_character_change_is_accepted(purpose: str) -> None:
    # base64 leaves bits of a part's last character unused: itsdangerous alone takes some
    token = make(purpose)
    for i in range(len(token)):
        for c in string.ascii_letters + string.digits + "-_.":
            if c != token[i]:
                altered = token[:i] + c + token[i + 1 :]
                assert TRACKER.read(purpose, altered) is None, altered  # type: ignore[arg-type]
    assert TRACKER.read(purpose, token + "A") is None  # type: ignore[arg-type]
    assert TRACKER.read(purpose, token[:-1]) is None  # type: ignore[arg-type]


def test_a_token_works_for_its_own_purpose_only() -> None:
    for made in PURPOSES:
        for used in PURPOSES:
            link = TRACKER.read(used, make(made))
            assert (link is not None) == (made == used), (made, used)


def test_another_secret_cannot_make_tokens() -> None:
    forger = Tracker("a guessed secret", "https://track.example")
    assert TRACKER.read("open", forger.token("open", SEND)) is None
    assert TRACKER.read("click", forger.token("click", SEND, 0, "https://evil.example/")) is None


def test_a_payload_swapped_under_a_valid_signature_is_refused() -> None:
    # another contact, another URL: the signature covers the payload
    token = make("click")
    payload, signature = token.split(".")
    assert orjson.loads(base64_decode(payload)) == ["alice", SEND.key, "email", "welcome", 0, URL]
    for changed in (
        ["bob", SEND.key, "email", "welcome", 0, URL],
        ["alice", SEND.key, "email", "welcome", 0, "https://evil.example/"],
        ["alice", SEND.key, "email", "welcome", 1, URL],
    ):
        other = base64_encode(orjson.dumps(changed)).decode()
        assert TRACKER.read("click", f"{other}.{signature}") is None


@pytest.mark.parametrize(
    "token",
    [
        "",
        ".",
        "..",
        "a.b",
        "not-a-token",
        ".eJw.abc",
        "x" * 5000,
        "é.é",
        "%00.%00",
        "\ud800.\ud800",
    ],
)
def test_garbage_is_refused_without_an_error(token: str) -> None:
    for purpose in PURPOSES:
        assert TRACKER.read(purpose, token) is None


@settings(max_examples=200, deadline=None)
@given(st.text())
def test_any_text_is_refused_or_read_never_raises(token: str) -> None:
    for purpose in PURPOSES:
        assert TRACKER.read(purpose, token) is None


def test_tokens_are_deterministic() -> None:
    # every retry of a send stores the same bytes
    assert make("open") == make("open")
    assert make("click") == make("click")


def signed(purpose: str, payload: object, secret: str = "a secret of this daemon") -> str:
    """A token as tracking.md writes it, made here with itsdangerous itself."""
    signer = Signer(secret, salt=f"leadlang.{purpose}", digest_method=hashlib.sha256)
    return signer.sign(base64_encode(orjson.dumps(payload))).decode()


def test_tokens_are_made_as_documented_so_links_already_sent_keep_working() -> None:
    # tracking.md: BASE64URL(JSON payload) "." BASE64URL(HMAC-SHA256), itsdangerous's Signer,
    # one salt per purpose; tokens never expire, so an upgrade must read the old ones
    head = [SEND.contact, SEND.key, SEND.channel, SEND.message]
    assert make("open") == signed("open", head)
    assert make("unsubscribe") == signed("unsubscribe", head)
    assert TRACKER.token("click", SEND, 2, URL) == signed("click", [*head, 2, URL])
    assert make("open") == (
        "WyJhbGljZSIsIjAxMjM0NTY3ODlhYmNkZWYwMTIzNDU2Nzg5YWJjZGVmIiwiZW1haWwiLCJ3ZWxjb21lIl0"
        ".cfx_dugBJMjbQhGl557Re8rtqpkfti71yKd2rMmX7pk"
    )
    for purpose, route in (("open", "o"), ("click", "c"), ("unsubscribe", "u")):
        token = make(purpose)
        url = TRACKER.url(purpose, SEND, 0, URL)  # type: ignore[arg-type]
        assert url == f"https://track.example/{route}/{token}"


def test_a_tracker_without_a_secret_is_refused() -> None:
    # an empty key would sign tokens anyone can make
    with pytest.raises(ValueError, match="secret"):
        Tracker("", "https://track.example")


@pytest.mark.parametrize(
    ("purpose", "payload"),
    [
        ("open", "not a list"),
        ("open", "abcd"),  # four texts, were it a list
        ("click", "abcdef"),
        ("open", {"0": "alice"}),
        ("open", ["alice", "k", "email"]),
        ("open", ["alice", "k", "email", "welcome", 0]),
        ("unsubscribe", ["alice", "k", "email", "welcome", 0, URL]),
        ("open", [1, "k", "email", "welcome"]),
        ("open", ["alice", "k", "email", None]),
        ("unsubscribe", ["alice", "k", ["email"], "welcome"]),
        ("click", ["alice", "k", "email", "welcome", 0]),
        ("click", ["alice", "k", "email", "welcome", 0, URL, 1]),
        ("click", ["alice", "k", "email", 7, 0, URL]),
        ("click", ["alice", "k", "email", "welcome", "0", URL]),
        ("click", ["alice", "k", "email", "welcome", 0.0, URL]),
        ("click", ["alice", "k", "email", "welcome", True, URL]),
        ("click", ["alice", "k", "email", "welcome", 0, None]),
        ("click", ["alice", "k", "email", "welcome", 0, "javascript:alert(1)"]),
        ("click", ["alice", "k", "email", "welcome", 0, "//evil.example/"]),
    ],
)
def test_a_signed_payload_of_another_shape_is_refused(purpose: str, payload: object) -> None:
    # only a payload this daemon makes is read, whatever else carries a valid signature
    assert TRACKER.read(purpose, signed(purpose, payload)) is None  # type: ignore[arg-type]


def test_a_signed_token_whose_payload_is_not_json_is_refused() -> None:
    signer = Signer("a secret of this daemon", salt="leadlang.open", digest_method=hashlib.sha256)
    for raw in (b'["alice"', b"\xff\xfe", b""):
        assert TRACKER.read("open", signer.sign(base64_encode(raw)).decode()) is None


# ---------------------------------------------------------------- html


def click(index: int, url: str) -> str:
    return f"https://t/c/{index}/{url}"


def rewrite(
    text: str, pixel: str | None = "https://t/o/P", unsub: str | None = "https://t/u/U"
) -> str:
    return rewrite_html(text, click, pixel, unsub)


def test_links_become_click_links_and_the_rest_stays_byte_for_byte() -> None:
    before = (
        "<!DOCTYPE html>\r\n<html><head><style>a{color:red}</style></head><body>\r\n"
        "<p class=\"x\">Hi <b>Ann</b>, <a class=big\r\n  HREF = 'https://a.example/p?x=1&amp;y=2'"
        " >one</a> and <A href=http://b.example/>two</A>.</p>\n"
        '<a href="mailto:help@x.example">mail</a> <a href="tel:+1555">call</a> '
        '<a href="#top">top</a> <a href="/relative">rel</a> <a name="anchor">n</a>\n'
        "</body></html>\n"
    )
    after = rewrite(before)
    assert after == (
        "<!DOCTYPE html>\r\n<html><head><style>a{color:red}</style></head><body>\r\n"
        '<p class="x">Hi <b>Ann</b>, <a class=big\r\n  HREF = '
        '"https://t/c/0/https://a.example/p?x=1&amp;y=2"'
        ' >one</a> and <A href="https://t/c/1/http://b.example/">two</A>.</p>\n'
        '<a href="mailto:help@x.example">mail</a> <a href="tel:+1555">call</a> '
        '<a href="#top">top</a> <a href="/relative">rel</a> <a name="anchor">n</a>\n'
        '<img src="https://t/o/P" width="1" height="1" alt="" '
        'style="display:block;border:0;width:1px;height:1px"></body></html>\n'
    )


def test_the_link_url_is_the_unescaped_href() -> None:
    seen: list[tuple[int, str]] = []
    rewrite_html(
        '<a href="https://x.example/?a=1&amp;b=2">x</a><a href=" https://y.example/\n">y</a>',
        lambda i, u: seen.append((i, u)) or "z",
        None,
        None,
    )
    assert seen == [(0, "https://x.example/?a=1&b=2"), (1, "https://y.example/")]


def test_links_in_comments_scripts_and_attribute_values_are_not_links() -> None:
    text = (
        '<!-- <a href="https://c.example"> --><script>s = \'<a href="https://s.example">\';'
        '</script><a title=\'<a href="https://t.example">\' href="https://real.example">r</a>'
    )
    after = rewrite(text, pixel=None)
    assert after == text.replace('"https://real.example"', '"https://t/c/0/https://real.example"')


def test_the_pixel_goes_before_the_last_body_end_or_at_the_end() -> None:
    assert rewrite("<p>x</p>", unsub=None).endswith(
        '<p>x</p><img src="https://t/o/P" '
        'width="1" height="1" alt="" '
        'style="display:block;border:0;'
        'width:1px;height:1px">'
    )
    text = "<body><!-- </body> --><p>x</p></BODY>\n"
    after = rewrite(text)
    assert after.startswith("<body><!-- </body> --><p>x</p><img ")
    assert after.endswith("></BODY>\n")


def test_the_unsubscribe_placeholder_becomes_the_unsubscribe_link() -> None:
    text = '<a href="leadlang:unsubscribe">Unsubscribe</a> <a href="https://x.example">x</a>'
    assert rewrite(text, pixel=None) == (
        '<a href="https://t/u/U">Unsubscribe</a> <a href="https://t/c/0/https://x.example">x</a>'
    )


def test_the_pixel_url_is_escaped_in_its_attribute() -> None:
    after = rewrite("<p>x</p>", pixel='https://t/o/P?a=1&b="2"', unsub=None)
    assert after.startswith('<p>x</p><img src="https://t/o/P?a=1&amp;b=&quot;2&quot;" ')


def test_a_link_after_the_last_body_end_is_tracked_and_the_pixel_stays_before_it() -> None:
    text = '<body><p>x</p></body>\n<a href="https://x.example/">late</a>'
    assert rewrite(text) == (
        '<body><p>x</p><img src="https://t/o/P" width="1" height="1" alt="" '
        'style="display:block;border:0;width:1px;height:1px"></body>\n'
        '<a href="https://t/c/0/https://x.example/">late</a>'
    )


def test_when_the_parser_gives_up_the_pixel_goes_at_the_end() -> None:
    # the `</body>` it saw may not be the last one: the pixel goes where it always can
    text = "<body>a</body><![foo[ b</body>"
    assert rewrite(text) == text + (
        '<img src="https://t/o/P" width="1" height="1" alt="" '
        'style="display:block;border:0;width:1px;height:1px">'
    )


def test_a_new_href_is_escaped_in_its_attribute() -> None:
    after = rewrite_html(
        '<a href="https://x.example/">x</a>', lambda i, u: "https://t/c/'\"&", None, None
    )
    assert after == '<a href="https://t/c/&#x27;&quot;&amp;">x</a>'


def test_only_a_links_href_is_rewritten_whatever_its_form() -> None:
    # a stylesheet or any other tag's href is no link; a self-closed <a/>, an unquoted href
    # and one after an href without a value are
    text = (
        '<link rel=stylesheet href="https://x.example/s.css"><a href>none</a>'
        '<a href="https://x.example/a"/><a href=https://x.example/h>h</a>'
    )
    assert rewrite(text, pixel=None) == (
        '<link rel=stylesheet href="https://x.example/s.css"><a href>none</a>'
        '<a href="https://t/c/0/https://x.example/a"/><a href="https://t/c/1/https://x.example/h">h</a>'
    )


def test_the_unsubscribe_placeholder_in_any_case_and_without_an_unsubscribe_url() -> None:
    text = '<a href="Leadlang:Unsubscribe">u</a>'
    assert rewrite(text, pixel=None) == '<a href="https://t/u/U">u</a>'
    assert rewrite(text, pixel=None, unsub=None) == text


def test_the_pixel_goes_before_the_last_of_several_body_ends() -> None:
    pixel = (
        '<img src="https://t/o/P" width="1" height="1" alt="" '
        'style="display:block;border:0;width:1px;height:1px">'
    )
    assert rewrite("<body>a</body> b</body>\n", unsub=None) == f"<body>a</body> b{pixel}</body>\n"
    assert rewrite("</body><p>x</p>", unsub=None) == f"{pixel}</body><p>x</p>"


def test_a_document_without_links_only_gains_the_pixel() -> None:
    text = "<p>Plain &amp; simple &#8212; caf\u00e9 <br/> <img src=x.png></p>"
    assert rewrite(text).startswith(text)
    assert rewrite(text, pixel=None) == text


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet="<>ah ref=\"'/!-:tps.x&;\n", max_size=80))
def test_rewriting_any_text_only_replaces_href_values(text: str) -> None:
    marker = "\x00"
    after = rewrite_html(text, lambda i, u: marker, None, None)
    if "http" not in text:
        assert after == text
    # with the new values taken out, what is left is the text with some values taken out:
    # every character of it is found, in order, in the original
    pos = 0
    for ch in after.replace(f'"{marker}"', ""):
        pos = text.index(ch, pos) + 1


def test_trackable_urls() -> None:
    assert is_trackable("https://a.example/x")
    assert is_trackable("HTTP://a.example")
    for url in (
        "javascript:alert(1)",
        "//evil.example",
        "http:///evil",
        "https://a\n.example",
        "https://a.exa\tmple",
        "https://a.example/\r",
        "ftp://x",
        "https://",
        "http://",
        "https://\\evil.example",  # a browser reads the backslash as a slash: no host
    ):
        assert not is_trackable(url)


def test_location_percent_encodes_what_a_header_cannot_carry() -> None:
    assert location("https://a.example/caf\u00e9 x?q=1") == "https://a.example/caf%C3%A9%20x?q=1"
    assert location(URL) == URL
    assert location("https://a.example/~u/\x07\x7f") == "https://a.example/~u/%07%7F"


def test_decorate_email_adds_both_list_unsubscribe_headers() -> None:
    content = {"subject": "s", "text": "t", "html": "<p>hi</p>", "headers": {"X-A": "1"}}
    out = TRACKER.decorate_email(content, SEND)
    unsubscribe = TRACKER.url("unsubscribe", SEND)
    assert out["headers"] == {
        "X-A": "1",
        "List-Unsubscribe": f"<{unsubscribe}>",
        "List-Unsubscribe-Post": "List-Unsubscribe=One-Click",
    }
    assert unsubscribe.startswith("https://track.example/u/")
    assert TRACKER.url("open", SEND) in out["html"]
    assert content["headers"] == {"X-A": "1"}  # the input is left as it was
    text_only = TRACKER.decorate_email({"subject": "s", "text": "t", "html": None}, SEND)
    assert text_only["html"] is None and "List-Unsubscribe" in text_only["headers"]


def test_decorate_email_tracks_each_link_and_the_unsubscribe_placeholder() -> None:
    html = (
        '<p><a href="https://a.example/">a</a> <a href="https://b.example/">b</a> '
        '<a href="leadlang:unsubscribe">unsubscribe</a></p>'
    )
    # an html-only email (its text part is made at delivery) keeps text None
    out = TRACKER.decorate_email({"subject": "s", "text": None, "html": html}, SEND)
    assert out["text"] is None
    hrefs = re.findall(r'href="([^"]*)"', out["html"])
    assert hrefs == [
        TRACKER.url("click", SEND, 0, "https://a.example/"),
        TRACKER.url("click", SEND, 1, "https://b.example/"),
        TRACKER.url("unsubscribe", SEND),
    ]
    assert [TRACKER.read("click", h.rsplit("/", 1)[1]) for h in hrefs[:2]] == [
        Link("click", SEND, 0, "https://a.example/"),
        Link("click", SEND, 1, "https://b.example/"),
    ]


def test_markup_the_parser_gives_up_on_keeps_the_links_before_it() -> None:
    # html.parser raises AssertionError on `<![foo[`: the email still goes out
    text = "<a href='http://a.example'>a</a><![foo[ <a href='http://b.example'>b</a></body>"
    after = rewrite(text)
    assert after.startswith('<a href="https://t/c/0/http://a.example">a</a><![foo[ ')
    assert "<a href='http://b.example'>b</a></body><img " in after


@settings(max_examples=500, deadline=None)
@given(st.text(alphabet="<>![]-?/ahrefbodyst=\"' :p&#;x\n", max_size=120))
def test_rewriting_never_raises(text: str) -> None:
    after = rewrite(text)
    assert after.count('<img src="https://t/o/P"') == 1


@pytest.mark.parametrize(
    ("written", "followed"),
    [
        ("https://x.example/?a=1&amp;b=2", "https://x.example/?a=1&b=2"),
        # a browser keeps `&reg`, `&copy`, `&not` when a letter, digit or `=` follows
        ("https://x.example/?a=1&region=eu", "https://x.example/?a=1&region=eu"),
        ("https://x.example/?a=1&copy=2", "https://x.example/?a=1&copy=2"),
        ("https://x.example/?&notit;", "https://x.example/?&notit;"),
        ("https://x.example/?q=&#38;&#x26;&amp", "https://x.example/?q=&&&"),
        ("https://x.example/?q=&copy 2", "https://x.example/?q=\u00a9 2"),
        ("https://x.example/?q=&#X26;&#38", "https://x.example/?q=&&"),
        ("https://x.example/?q=&gt", "https://x.example/?q=>"),
        ("https://x.example/?a=1&copy2", "https://x.example/?a=1&copy2"),
        ("https://x.example/?q=&copy-2", "https://x.example/?q=\u00a9-2"),
        # outer spaces (a form feed too) and any tab or newline are dropped
        ("\f https://x.example/\f", "https://x.example/"),
        ("https://x.exa\tmple/p\nq\r", "https://x.example/pq"),
    ],
)
def test_the_tracked_url_is_the_one_a_browser_follows(written: str, followed: str) -> None:
    seen: list[str] = []
    rewrite_html(f'<a href="{written}">x</a>', lambda i, u: seen.append(u) or "z", None, None)
    assert seen == [followed]


def test_a_link_starting_with_a_non_breaking_space_is_relative_and_left_alone() -> None:
    # a browser strips only ASCII whitespace (and controls) around a URL
    text = '<a href="\u00a0https://x.example/">x</a>'
    assert rewrite(text, pixel=None) == text


def test_the_placeholder_in_the_text_part_becomes_the_unsubscribe_link() -> None:
    content = {"subject": "s", "text": "Hi.\nUnsubscribe: leadlang:unsubscribe\n", "html": None}
    out = TRACKER.decorate_email(content, SEND)
    assert out["text"] == f"Hi.\nUnsubscribe: {TRACKER.url('unsubscribe', SEND)}\n"


def test_a_flow_can_branch_on_the_link_a_contact_clicked(tmp_path: Path) -> None:
    # the `/c/` route records `message_clicked` with the link's `url`: check knows it
    script = """
flow pricing:
  on message_clicked where url contains "pricing"
  tag "pricing"
"""
    clicked = {"type": "track", "event": "message_clicked", "timestamp": "2025-01-01T00:00:00Z"}
    events = [
        {**clicked, "userId": "a", "properties": {"message": "m", "url": "https://x.io/pricing"}},
        {**clicked, "userId": "b", "properties": {"message": "m", "url": "https://x.io/blog"}},
    ]
    tags = [(e["contact"], e["tag"]) for e in run_text(tmp_path, script, events) if "tag" in e]
    assert tags == [("a", "pricing")]
