"""render_message: compiled messages + variables -> content, in Jinja2's sandbox."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from leadlang.interpreter.check import check_paths
from leadlang.interpreter.compile import compile_program
from leadlang.runtime.delivery.render import (
    RenderError,
    _fast_feed,
    _text,
    _TextParser,
    clear_template_cache,
    html_to_text,
    render_message,
)

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def message(channel: str, folder: Path | str = ".", **fields: Any) -> dict[str, Any]:
    """A message as the compiler emits it; `name=("file", path)` for a template file."""
    compiled = {}
    for name, value in fields.items():
        if isinstance(value, tuple) and value[0] == "file":
            compiled[name] = {"file": True, "value": value[1]}
        else:
            compiled[name] = {"file": False, "value": value}
    return {"channel": channel, "dir": str(folder), "fields": compiled}


def variables(**extra: Any) -> dict[str, Any]:
    return {"id": "c1", "score": 42, "tags": ["vip"], "first_name": "Ann", "event": {}, **extra}


@pytest.fixture(scope="module")
def contactflow() -> dict[str, Any]:
    result = check_paths([str(EXAMPLES / "contactflow")])
    assert result.program is not None
    return compile_program(result.program)["messages"]


def test_the_examples_messages_render(contactflow: dict[str, Any]) -> None:
    v = variables(first_name="Ann")
    email = render_message(contactflow["thank_you"], v)
    assert email["subject"] == "Thank you for your order, Ann"
    assert "<h1>Thank you, Ann!</h1>" in email["html"]
    assert email["text"] is None  # html only: the driver derives the text part at delivery
    text = html_to_text(email["html"])
    assert text.startswith("Thank you, Ann!\n\n")
    assert "Choose my loyalty offer (https://shop.example.com/preferences?u=c1&" in text
    sms = render_message(contactflow["loyalty_sms"], v)
    assert sms == {"text": sms["text"]} and sms["text"].startswith("Ann, thanks for joining")
    push = render_message(contactflow["loyalty_push"], v)
    assert push["url"] == "https://push.example.com/v1/notifications"
    assert push["headers"]["X-Source"] == "leadlang"
    assert push["json"]["template"] == "winter_loyalty_25"


def test_email_fields_and_optional_addresses() -> None:
    m = message(
        "email",
        subject="Hi {{ first_name }}",
        text="Score {{ score }}, tags {{ tags | join(',') }}, total {{ event.total }}",
        html="<p>{{ first_name }}</p>",
        **{"from": "Shop <shop@example.com>", "reply_to": " help@example.com "},
    )
    content = render_message(m, variables(event={"total": 12}))
    assert content == {
        "subject": "Hi Ann",
        "text": "Score 42, tags vip, total 12",
        "html": "<p>Ann</p>",
        "from": "Shop <shop@example.com>",
        "reply_to": "help@example.com",
    }
    text_only = render_message(message("email", subject="s", text="t"), variables())
    assert text_only == {"subject": "s", "text": "t", "html": None}


def test_an_address_that_renders_blank_is_left_out() -> None:
    # the driver's configured `from` applies, and no empty Reply-To is written
    m = message("email", subject="s", text="t", **{"from": "{{ sender }}", "reply_to": " \t "})
    assert render_message(m, variables()) == {"subject": "s", "text": "t", "html": None}


def test_html_is_autoescaped_and_text_is_not() -> None:
    m = message("email", subject="{{ first_name }}", html="<p>Hello {{ first_name }}</p>")
    content = render_message(m, variables(first_name="<script>alert(1)</script>"))
    assert "<script>" not in content["html"]
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in content["html"]
    assert content["subject"] == "<script>alert(1)</script>"
    assert html_to_text(content["html"]) == "Hello <script>alert(1)</script>\n"  # plain text


@pytest.mark.parametrize(
    "template",
    [
        "{{ ''.__class__ }}",
        "{{ ''.__class__.__mro__[1].__subclasses__() }}",
        "{% for c in ''.__class__.__mro__ %}{{ c }}{% endfor %}",
        "{{ first_name.__init__.__globals__ }}",
        "{{ cycler.__init__.__globals__.os }}",
        # an unsafe attribute is refused however it is used, not only when printed
        "{% for c in ''.__class__ %}x{% endfor %}",
        "{% if ''.__class__ %}x{% endif %}",
        "{{ ''.__class__ | length }}",
    ],
)
def test_the_sandbox_refuses_unsafe_access(template: str) -> None:
    with pytest.raises(RenderError) as caught:
        render_message(message("sms", text=template), variables())
    assert "unsafe" in caught.value.message or "undefined" in caught.value.message


def test_a_template_cannot_change_the_variables() -> None:
    v = variables(tags=["vip"], prefs={"a": 1})
    for template in ("{{ tags.append('x') }}", "{{ prefs.update(a=2) }}", "{{ prefs.clear() }}"):
        with pytest.raises(RenderError, match="unsafe"):
            render_message(message("sms", text=template), v)
    assert v["tags"] == ["vip"] and v["prefs"] == {"a": 1}


def test_missing_variables_render_empty_and_defaults_apply() -> None:
    m = message("sms", text="Hi {{ nickname }}|{{ city | default('there') }}")
    assert render_message(m, variables()) == {"text": "Hi |there"}
    # empty however it is used: no items, false, of length 0
    m = message(
        "sms",
        text="{% for x in nickname %}x{% endfor %}|{{ nickname | length }}|"
        "{% if nickname %}yes{% else %}no{% endif %}",
    )
    assert render_message(m, variables()) == {"text": "|0|no"}


@pytest.mark.parametrize(
    ("template", "reason"),
    [
        ("{{ 1 / 0 }}", "ZeroDivisionError"),
        ("{{ nothing.at_all }}", "undefined"),
        ("{% if %}", "TemplateSyntaxError"),
        # (check compiles templates, it never runs them: a macro may call itself forever)
        ("{% macro f(n) %}{{ f(n) }}{% endmacro %}{{ f(1) }}", ": the template nests too deeply"),
    ],
)
def test_a_failure_is_a_render_error_naming_the_field(template: str, reason: str) -> None:
    with pytest.raises(RenderError) as caught:
        render_message(message("email", subject="ok", html=template), variables())
    assert caught.value.message.startswith("`html` does not render")
    assert reason in caught.value.message


def test_push_renders_strings_inside_headers_and_json() -> None:
    m = message(
        "push",
        url="https://push.example.com/u/{{ id }}",
        headers={"X-Contact": "{{ id }}", "X-Fixed": "yes"},
        json={"who": "{{ first_name }}", "n": 3, "ok": True, "list": ["{{ score }}", None]},
        title="Hey {{ first_name }}",
    )
    assert render_message(m, variables()) == {
        "url": "https://push.example.com/u/c1",
        "headers": {"X-Contact": "c1", "X-Fixed": "yes"},
        "json": {"who": "Ann", "n": 3, "ok": True, "list": ["42", None]},
        "title": "Hey Ann",
    }


def test_a_push_without_headers_json_or_url_and_with_a_blank_title() -> None:
    # the webhook driver posts {"title", "text"} when there is no json: a title that
    # renders empty is sent as ""; a url that renders blank is no url (the send fails there)
    m = message("push", url=" {{ endpoint }} ", title="{{ nickname }}", text="Hi {{ first_name }}")
    assert render_message(m, variables()) == {
        "url": None,
        "headers": {},
        "json": None,
        "title": "",
        "text": "Hi Ann",
    }
    m = message("push", url=" https://push.example/{{ id }}\n", json={"a": 1})
    assert render_message(m, variables()) == {
        "url": "https://push.example/c1",
        "headers": {},
        "json": {"a": 1},
    }
    assert render_message(message("push", text="t"), variables()) == {
        "url": None,
        "headers": {},
        "json": None,
        "text": "t",
    }


def test_a_message_of_no_known_channel_is_a_render_error() -> None:
    # (check allows only email, sms and push; any failure to render is a RenderError)
    with pytest.raises(RenderError, match=r"^unknown channel `fax`$"):
        render_message(message("fax", text="t"), variables())


def test_push_data_is_not_html_escaped_keeps_other_keys_and_names_a_failing_field() -> None:
    m = message(
        "push",
        headers={"X-Name": "{{ first_name }}"},
        json={"$value": "{{ id }}", "n": {"$value": 2}, "who": "{{ first_name }}"},
    )
    content = render_message(m, variables(first_name="<b>A&B</b>"))
    assert content["headers"] == {"X-Name": "<b>A&B</b>"}
    # an object is an evaluated value only when `$value` is its one key (check refuses one
    # written so in a script: T012)
    assert content["json"] == {"$value": "c1", "n": 2, "who": "<b>A&B</b>"}
    for name in ("headers", "json"):
        broken = message("push", **{name: {"a": ["{{ 1 / 0 }}"]}})
        with pytest.raises(RenderError, match=f"^`{name}` does not render: ZeroDivisionError"):
            render_message(broken, variables())


def test_template_files_are_read_once_and_cached(tmp_path: Path) -> None:
    clear_template_cache()
    (tmp_path / "t").mkdir()
    page = tmp_path / "t" / "mail.html"
    page.write_text("<p>v1 {{ first_name }}</p>", encoding="utf-8")
    m = message("email", tmp_path, subject="s", html=("file", "t/mail.html"))
    assert render_message(m, variables())["html"] == "<p>v1 Ann</p>"
    page.write_text("<p>v2 {{ first_name }}</p>", encoding="utf-8")
    assert render_message(m, variables())["html"] == "<p>v1 Ann</p>"
    clear_template_cache()  # what a reload does
    assert render_message(m, variables())["html"] == "<p>v2 Ann</p>"


def test_an_email_without_subject_or_text_renders_them_empty_and_names_a_failing_field() -> None:
    content = render_message(message("email", html="<p>Hi {{ first_name }}</p>"), variables())
    assert content == {"subject": "", "text": None, "html": "<p>Hi Ann</p>"}
    broken = message("email", subject="ok", html="{{ first_name.__class__ }}")
    with pytest.raises(RenderError, match=r"^`html` does not render"):
        render_message(broken, variables())


def test_a_missing_template_file_is_a_render_error(tmp_path: Path) -> None:
    m = message("email", tmp_path, subject="s", html=("file", "gone.html"))
    with pytest.raises(RenderError) as caught:
        render_message(m, variables())
    path = tmp_path / "gone.html"
    assert caught.value.message.startswith(f"`html`: cannot read template `{path}`: ")
    assert "No such file" in caught.value.message


def test_lines_end_in_newline_with_or_without_a_placeholder(tmp_path: Path) -> None:
    # Jinja writes "\n" for "\r\n" and "\r": a text with no template syntax, which is not
    # given to Jinja, ends its lines the same way
    clear_template_cache()
    (tmp_path / "plain.txt").write_bytes(b"Hello,\r\nsee you\rsoon\r\n")
    (tmp_path / "named.txt").write_bytes(b"Hello {{ first_name }},\r\nsee you\rsoon\r\n")
    plain = render_message(message("sms", tmp_path, text=("file", "plain.txt")), variables())
    named = render_message(message("sms", tmp_path, text=("file", "named.txt")), variables())
    assert plain == {"text": "Hello,\nsee you\nsoon\n"}
    assert named == {"text": "Hello Ann,\nsee you\nsoon\n"}


def test_a_template_file_that_is_not_utf8_is_a_render_error(tmp_path: Path) -> None:
    clear_template_cache()
    (tmp_path / "latin1.txt").write_bytes("Ol\u00e1 {{ first_name }}".encode("latin-1"))
    m = message("sms", tmp_path, text=("file", "latin1.txt"))
    with pytest.raises(RenderError, match=r"^`text`: cannot read template `.*latin1\.txt`: "):
        render_message(m, variables())


def test_html_to_text() -> None:
    html = """<!doctype html><html><head><title>T</title><style>p {color: red}</style></head>
    <body><h1>Big   news</h1><p>Line one<br>line&nbsp;two &amp; more</p>
    <ul><li>first</li><li>second</li></ul>
    <p><a href="https://x.example/a?b=1&amp;c=2">the offer</a> or
    <a href="javascript:alert(1)">not a link</a> <a href="https://y.example">https://y.example</a>
    </p><script>var secret = 1;</script><img src="x.png" alt="logo"></body></html>"""
    assert html_to_text(html) == (
        "Big news\n\n"
        "Line one\nline\xa0two & more\n\n"
        "- first\n- second\n\n"
        "the offer (https://x.example/a?b=1&c=2) or not a link https://y.example\n\n"
        "logo\n"
    )
    assert html_to_text("") == ""


@pytest.mark.parametrize(
    ("html", "text"),
    [
        # the head and what is in it are dropped, however deep
        ("<head><title>T</title>meta text</head><p>body</p>", "body\n"),
        ('<head><img alt="hidden"></head>x', "x\n"),
        ("<head/>x", "x\n"),  # a self-closed head holds nothing
        # <pre> keeps its line breaks (nested too), and only its own
        ("<pre>a\nb</pre>", "a\nb\n"),
        ("<pre><pre>x</pre>a\nb</pre>", "x\n\na\nb\n"),
        ("<pre>x</pre>a\nb", "x\n\na b\n"),
        ("<pre>a   b</pre>", "a b\n"),  # runs of spaces are one space everywhere
        # table cells apart, rows as paragraphs; list items; rules and breaks
        (
            "<table><tr><td>1</td><td>2</td></tr><tr><th>h</th><th>i</th></tr></table>",
            "1 2\n\nh i\n",
        ),
        ("<ul><li>one<li>two</ul>", "- one\n- two\n"),
        ("a<br/>b<hr/>c", "a\nb\n\n---\n\nc\n"),
        # an image is its alt text, or nothing; an unquoted value is kept whole
        ("<img src=a.png>x", "x\n"),
        ("<img alt=Xo>", "Xo\n"),
        ("<img alt=logo />x", "logo x\n"),
        # links: the address after the label, a mailto as its address, nothing twice
        (
            '<a href="mailto:a@b.example">write to us</a> <a href="mailto:a@b.example">a@b.example</a>',
            "write to us (a@b.example) a@b.example\n",
        ),
        ('<a href="https://x.example/"/>label</a>', "label\n"),  # a self-closed <a> links nothing
        ('<a href="https://x.example">https://<b>x.example</b></a>', "https://x.example\n"),
        ('see <a href="https://x.example"><img src=a.png></a>', "see https://x.example\n"),
        ("<script><script></script>x</script>y", "xy\n"),
    ],
)
def test_html_to_text_rules(html: str, text: str) -> None:
    assert html_to_text(html) == text
    assert by_htmlparser(html) == text


@given(st.text())
def test_html_to_text_takes_any_text(html: str) -> None:
    assert isinstance(html_to_text(html), str)


def by_htmlparser(html: str) -> str:
    """The text part as the standard library's HTMLParser alone reads `html`."""
    parser = _TextParser()
    parser.feed(html)
    parser.close()
    return _text(parser.parts)


_TEXTS = ["Hi ", "a&amp;b", "&nbsp;x", "x & y", "&#39;", "&#x41;", "&amp", "  \n\t", "\xa0",
          "\x0b", "\r\n", "1 > 0", "{{ first_name }}", "é", "https://y.example"]  # fmt: skip
_TAGS = ["p", "P", "a", "A", "br", "li", "td", "h1", "div", "pre", "img", "head", "title",
         "span", "b", "ul", "hr", "my-tag", "x1"]  # fmt: skip
_NAMES = ["href", "HREF", "alt", "class", "data-x", "x:y", "_z"]
_VALUES = ["https://x.example/a?b=1&amp;c=2", "mailto:a@b.example", "x y", "logo", "", "a/b",
           "&lt;b&gt;", "it's", 'say "hi"']  # fmt: skip
_QUOTES = ['"{}"', "'{}'", "{}"]
_GAPS = [" ", "  ", "\n", "\t", "\x0b", "/", "\xa0"]
_ENDS = [">", "/>", " />", " >", "/ >", "\n>"]
_OTHER = ["<!doctype html>", "<!DOCTYPE html PUBLIC>", "<!-- c -->", "<!--[if mso]><p>o</p><![endif]-->",
          "<script>x<p>y</p></script>", "<style>p {}</style>", "<", "< p>", "<1", "<?php ?>",
          "<![CDATA[x]]>", "</ p>", "</P >", "</li\n>", "</a b>", "</>", "</9>"]  # fmt: skip


@st.composite
def _start_tag(draw: st.DrawFn) -> str:
    text = "<" + draw(st.sampled_from(_TAGS))
    for _ in range(draw(st.integers(0, 3))):
        text += draw(st.sampled_from(_GAPS)) + draw(st.sampled_from(_NAMES))
        if draw(st.booleans()):
            value = draw(st.sampled_from(_VALUES))
            text += draw(st.sampled_from(["=", " = ", "=="]))
            text += draw(st.sampled_from(_QUOTES)).format(value)
    return text + draw(st.sampled_from(_ENDS))


_PIECES = st.one_of(
    st.sampled_from(_TEXTS),
    st.text(max_size=4),
    _start_tag(),
    st.builds("</{}>".format, st.sampled_from(_TAGS)),
    st.sampled_from(_OTHER),
)


# html_to_text tokenizes common HTML itself and hands the rest to HTMLParser: the text part
# must be the same either way.
@pytest.mark.parametrize(
    "html",
    [
        "x</P>y<P>z",
        "<A HREF=\"https://x.example/?a=1&amp;b=2\">go</A> <a href='mailto:a@b.example'>mail</a>",
        'a<p\x0bclass="c">x</p>y',
        '<a href="https://x.example/"/>label</a> <head/>x',
        "<img alt=logo/>x<img alt=logo />y",
        "a<img alt=logo>b<img alt=logo class=x>c<img class=x alt='logo'>d",
        "<a href=mailto:a@b.example>write</a> <a href = 'https://x.example' >go</a>",
        '<img alt="a&amp;b">',
        '<a href=https://x.example/>y</a> <a href="https://x.example/" >z</a>',
        "y<style>a</p>b</style>x",
        "y<script>a</p>b</script>x",
        "y<script>if (a < b) {}</script>x",
        "<!doctype html <p>>x",
        "<!DOCTYPE html>\n<br/>x<br />y<hr>z",
        "<ul><li>a<li>b</ul><table><tr><td>1</td><td>2</td></tr></table>",
        "<pre>a   b\n c</pre>  d   e",
        "<head><title>T</title></head><p>a &amp;amp; &lt;b&gt; &#39;q&#39;</p>",
        "<p>a<!-- c --></p><!--[if mso]>x<![endif]-->",
        "1 < 2 and <3",
        "<p class=a\xa0b>x</p>",
    ],
)
def test_html_to_text_reads_html_as_htmlparser_does(html: str) -> None:
    assert html_to_text(html) == by_htmlparser(html)


@settings(max_examples=400)
@given(st.lists(_PIECES, max_size=30).map("".join))
def test_html_to_text_reads_any_html_as_htmlparser_does(html: str) -> None:
    assert html_to_text(html) == by_htmlparser(html)


def test_the_examples_emails_take_the_fast_reading() -> None:
    templates = sorted(EXAMPLES.glob("*/templates/*.html"))
    assert templates
    for path in templates:
        html = path.read_text()
        parser = _TextParser()
        assert _fast_feed(parser, html), path
        assert _text(parser.parts) == by_htmlparser(html), path


@given(st.text())
def test_a_trait_never_becomes_markup(value: str) -> None:
    m = message("email", subject="s", html="<p>{{ first_name }}</p>")
    html = render_message(m, variables(first_name=value))["html"]
    assert html.startswith("<p>") and html.endswith("</p>")
    assert "<" not in html[3:-4] and ">" not in html[3:-4]
