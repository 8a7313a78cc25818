"""Every diagnostic code, with its one-line summary and the explanation `leadlang explain` prints.

Codes are grouped by the pass that reports them:
  S...  syntax (syntax/) and reading files (loader.py)
  N...  names: resolution, duplicates, modules (interpreter/resolve.py)
  T...  types (interpreter/types.py)
  F...  flow and message lints (interpreter/lints.py)
"""

from __future__ import annotations

import attrs


@attrs.frozen(slots=True)
class CodeInfo:
    code: str
    severity: str  # "error" | "warning": the default severity
    summary: str
    explanation: str


def _code(code: str, severity: str, summary: str, explanation: str) -> CodeInfo:
    return CodeInfo(code, severity, summary, explanation.strip())


_ALL: list[CodeInfo] = [
    # ------------------------------------------------------------------ syntax
    _code(
        "S001",
        "error",
        "unexpected text",
        """
The parser met something it did not expect at this point of the script, for example a
missing message name after `send`, or a step written where a declaration belongs.
The message says what was expected instead, and the help line says it again with a short
example of what is written there.

    flow nurture:
      on signed_up
      score 5            # wrong: the help says "write a signed number like `+5` or `-2` here"
      score +5           # right
""",
    ),
    _code(
        "S002",
        "error",
        "unexpected end of file",
        """
The file (or the declaration) ended in the middle of a construct: an unclosed `(`, `[`, `{`
or string, or a block header ending in `:` with no indented lines after it ("expected an
indented block after `flow f:`", also when the next line starts at column 0, which begins
the next declaration).
""",
    ),
    _code(
        "S003",
        "error",
        "tab in indentation",
        """
Blocks are delimited by indentation made of spaces only, as in Python. Replace the tab
characters at the start of the line with spaces.
""",
    ),
    _code(
        "S004",
        "error",
        "inconsistent indentation",
        """
A line is dedented to a column that does not match any enclosing block. Indent it to the
same column as the lines of the block it belongs to.
""",
    ),
    _code(
        "S005",
        "error",
        "invalid literal",
        """
A number, duration, date, datetime or time of day is malformed: e.g. `25:00`, `2025-13-01`,
`3mo` (durations use s, m, h, d, w only), or a string with an invalid escape. Strings use
JSON escapes; a `\\uD800`-`\\uDFFF` escape must be half of a surrogate pair (`"\\ud83d\\ude00"`
is one emoji), since a lone half is no character any text can hold.
""",
    ),
    _code(
        "S006",
        "error",
        "cannot read file",
        """
The file does not exist, cannot be read, is not UTF-8 text, or is larger than 4 MB (a
script that large is refused before it is read whole: checking takes time in proportion to the
text, about 10 s a megabyte on a busy two-core machine; split it into files joined by `use`).
""",
    ),
    _code(
        "S007",
        "error",
        "nesting too deep",
        """
The script nests deeper than the checker supports: an expression more than 150 levels deep
or with more than 100 open brackets, or blocks (`if` inside `if`...) more than 100 levels
deep. Split the expression with a `metric` or a `segment`; move deeply nested steps to a
flow of their own and `enroll` it.
""",
    ),
    _code(
        "S008",
        "error",
        "literal out of range",
        """
A number, duration, date or datetime is outside the range leadlang represents exactly:

- whole numbers at most 9,007,199,254,740,991 (2^53 - 1) either side of 0, and finite
  decimals (a decimal with hundreds of digits is out of range);
- durations at most 521,722w, the span from year 1 to year 9999;
- dates and datetimes from 0001-01-03T00:00:00Z to 9999-12-29T23:59:59Z (a date or a
  datetime without an offset is judged as if in UTC).

Event logs are held to the same range for timestamps, and a wait or a wake-up computed past
the end of the range never fires.

    wait 99999999999w        # wrong: longer than any span of time leadlang represents
    wait 52w                 # right
""",
    ),
    # ------------------------------------------------------------------ modules (loader.py)
    _code(
        "N010",
        "error",
        "module not found",
        """
A `use` line names a module that does not exist. `use std.NAME` loads `NAME.lead` from the
standard library (the message suggests the closest standard module); `use "path.lead"` is
read relative to the file that contains the `use` line.
""",
    ),
    _code(
        "N011",
        "error",
        "use cycle",
        """
Files `use` each other in a circle (a -> b -> a), so there is no order in which to load
them. Move the declarations both need into a third file that each of them uses.
""",
    ),
]

# ------------------------------------------------------------------ names, types, lints
# (interpreter/: resolve.py, declarations.py, types.py, lints.py, fold.py, templates.py)
_ALL += [
    _code(
        "N001",
        "error",
        "unknown message",
        """
A `send` (or `opened(MESSAGE)`) names a message that no loaded file declares.

    send dael          # wrong: no message `dael`
    send deal          # right, with `message deal:` declared in some loaded file
""",
    ),
    _code(
        "N002",
        "error",
        "unknown event (misspelt)",
        """
Event declarations are optional: events are open-ended, as in Segment, so `on signup_done`
is accepted even if no `event signup_done(...)` exists. But an undeclared event whose name
is one edit away (a letter added, missing or changed, or two letters swapped) from a
declared or built-in event, or from an undeclared event used more often, is taken to be a
misspelling, because it would silently never match.

    on order_complete          # wrong: `order_completed` is declared
    on order_completed         # right
If the near name really is a different event, declare it: `event order_complete(...)`.
""",
    ),
    _code(
        "N003",
        "error",
        "unknown event property",
        """
The event is declared, and the declaration has no property of this name. Inside an event's
`where`, bare names are that event's properties first (then traits, metrics, segments);
`event.NAME` reads the bound event's property.

    event order_completed(total: number)
    on order_completed where totl > 100     # wrong
    on order_completed where total > 100    # right
Add the property to the `event` declaration if the event really carries it.
""",
    ),
    _code(
        "N004",
        "error",
        "unknown name",
        """
A name in a condition or expression is not a built-in (`score`, `tags`, `id`, `now`), a
trait (built-in: `email`, `phone`, `timezone`, `unsubscribed`, or declared with `trait`), a
metric or a segment. Inside a flow, `opened`, `clicked`, `delivered` and `bounced` are
also names.

    segment fans = scroe > 50          # wrong
    segment fans = score > 50          # right
Declare new profile attributes: `trait plan: text`.
""",
    ),
    _code(
        "N005",
        "error",
        "unknown flow",
        """
`enroll` names a flow that no loaded file declares.

    enroll nurtrue       # wrong
    enroll nurture       # right, with `flow nurture:` declared
""",
    ),
    _code(
        "N006",
        "error",
        "unknown channel",
        """
The channels are `email`, `sms` and `push` (a webhook). A message's `channel`, a `cap` and
`send CHANNEL MESSAGE` must use one of them.

    cap mail 2 per 1d      # wrong
    cap email 2 per 1d     # right
""",
    ),
    _code(
        "N007",
        "error",
        "unknown function",
        """
The functions are the aggregates `count`, `total`, `average`, `last`, `days_since`, the
scalars `sigmoid`, `min`, `max`, `abs`, `round`, `lower`, `upper`, `len`, and, in flows,
`opened(MESSAGE)` (and `clicked`, `delivered`, `bounced`).

    metric buys = cuont(order_completed within 30d)     # wrong
    metric buys = count(order_completed within 30d)     # right
""",
    ),
    _code(
        "N008",
        "error",
        "unknown time zone",
        """
`timezone` in `settings` takes an IANA time zone name.

    timezone "Paris"            # wrong
    timezone "Europe/Paris"     # right
""",
    ),
    _code(
        "N009",
        "error",
        "duplicate definition",
        """
Names are global across every loaded file and every kind, and each can be defined once:
events, traits, metrics, segments, messages and flows share one namespace, so a segment and
a flow (or a message and an event) cannot have the same name either. Built-in traits, names
and events cannot be redeclared.

    message deal: ...
    message deal: ...          # wrong: the second `deal`
    flow deal: ...             # wrong too: `deal` is already a message
To change a definition from a `use`d module, copy the module into your project and edit it.
""",
    ),
    _code(
        "N012",
        "error",
        "duplicate event property",
        """
An `event` declaration lists the same property twice.

    event order_completed(total: number, total: text)     # wrong
    event order_completed(total: number, currency: text)  # right
""",
    ),
    _code(
        "N013",
        "error",
        "set twice",
        """
Something that exists once per program is given twice: the score's `decay` or `max`, the
`timezone` or `quiet hours` setting (across all loaded files), a field in one message, a
flow's `reenter` or `edits` clause, or a key in one object literal (`send deal with {...}`, a
message's `headers` or `json`). Remove one of them. (Several `cap` lines for one channel are fine: they all apply.)

    score:
      decay 10 every 7d idle
      decay 5 every 1d idle      # wrong: keep one decay
    send deal with {code: "A", code: "B"}      # wrong: keep one `code`
""",
    ),
    _code(
        "N014",
        "error",
        "defined in terms of itself",
        """
A metric or segment uses itself, directly or through others, so it has no value.

    segment a = b and score > 10
    segment b = a                  # wrong: a -> b -> a
""",
    ),
    _code(
        "N015",
        "error",
        "no event bound",
        """
`event` is the event that enrolled the contact in a flow (`on EVENT`), the one a `wait for`
received, or, in a `where`, the event being matched. Metrics, segments and `when` triggers
have no such event.

    segment big = event.total > 100                      # wrong
    segment big = last(order_completed).total > 100      # right
""",
    ),
    _code(
        "N016",
        "warning",
        "unknown message field",
        """
A message block takes the fields `channel`, `subject`, `text`, `html`, `from`, `reply_to`,
`title`, `url`, `headers` and `json`. Any other field is ignored, so it is most likely a
misspelling (a warning, so that a field a newer runtime knows does not stop the script).

    message deal:
      channel email
      subjet "20% off"      # wrong
      subject "20% off"     # right
""",
    ),
    _code(
        "N017",
        "error",
        "cannot set",
        """
`set NAME = EXPR` writes a trait: a built-in one (`email`, `phone`, `timezone`,
`unsubscribed`) or one declared with `trait`. Scores, metrics and segments are computed and
cannot be set.

    set plan = "pro"               # wrong without a declaration
    trait plan: text               # right: declare it first
""",
    ),
    _code(
        "N018",
        "error",
        "keyword used as a name",
        """
The words that start a declaration, a header clause or a step, the operators and the literals
(`send`, `wait`, `when`, `flow`, `check`, `and`, `true`, ...) are reserved: a trait, metric,
segment, message, flow or event cannot be named with one, because conditions and steps would
read ambiguously. Nor can a reference: an event name (`on within`, `count(send)`), a name in
an expression (`days_since(exit)`), a split or arm name (`split when:`), a flow to `enroll`
or a trait to `set`. An event the log spells with a keyword is written quoted (`on "send"`).
`score`, `event` and `message` still read as names in expressions (the built-in score, the
bound event, the built-in events' `message` property). Contextual words (`after`, `every`,
`file`, `to`, `up`, ...) are free as names.

    segment check = score > 50          # wrong
    segment to_check = score > 50       # right
    on send                             # wrong
    on "send"                           # right, for an event the log names `send`
""",
    ),
    _code(
        "T001",
        "error",
        "operands do not fit",
        """
An operator is given values of types it cannot work with, so the result would always be
false (comparisons) or missing (arithmetic). Numbers are written without quotes; a
duration needs a unit; comparing with `none` only works with `==` and `!=`.

    when score > "50"        # wrong: a number and a text
    when score > 50          # right
""",
    ),
    _code(
        "T002",
        "error",
        "not a condition",
        """
A condition (a segment, a trigger, `if`, `check`, `where`, either side of `and`/`or`, the
operand of `not`) must be true or false, not a number or a text.

    if score:            # wrong
    if score > 50:       # right
""",
    ),
    _code(
        "T003",
        "error",
        "duration expected",
        """
`wait`, `within`, `up to` and `reenter after` take a duration: a number with a unit,
s (seconds), m (minutes), h, d, w, or compounds like `1d12h`.

    wait "1 day"      # wrong
    wait 1d           # right
""",
    ),
    _code(
        "T004",
        "error",
        "time or datetime expected",
        """
`wait until` takes a time of day (the next such moment in the contact's time zone) or a
datetime (that instant). For a delay, use `wait`.

    wait until 3d       # wrong
    wait until 09:00    # right
    wait 3d             # right, for a delay
""",
    ),
    _code(
        "T005",
        "error",
        "bad aggregate",
        """
Aggregates take an event, with optional `where` and `within` clauses:
`count(EVENT ...)`, `days_since(EVENT ...)`, `last(EVENT ...).PROPERTY`, and
`total(EVENT.PROPERTY ...)` / `average(EVENT.PROPERTY ...)` of a number property.
Other functions take no `where` or `within`.

    total(order_completed within 30d)          # wrong: total of what?
    total(order_completed.total within 30d)    # right
""",
    ),
    _code(
        "T006",
        "error",
        "bad function arguments",
        """
A function is called with the wrong number or types of arguments.

    sigmoid(1, 2)       # wrong: one argument
    lower(score)        # wrong: lower takes text
    sigmoid(score / 10) # right
""",
    ),
    _code(
        "T007",
        "error",
        "value does not fit the trait",
        """
`set` gives a trait a value of another type than the trait's declaration.

    trait vip: bool
    set vip = "yes"     # wrong
    set vip = true      # right
""",
    ),
    _code(
        "T008",
        "error",
        "default does not fit the trait",
        """
A trait's default has another type than the trait's declared type.

    trait first_name: text = 0          # wrong
    trait first_name: text = "there"    # right
""",
    ),
    _code(
        "T009",
        "error",
        "unknown type",
        """
Declared types are `number`, `text`, `bool`, `datetime`, `duration`, `time`, `list` and
`object`.

    event order_completed(total: int)       # wrong
    event order_completed(total: number)    # right
""",
    ),
    _code(
        "T010",
        "error",
        "invalid regular expression",
        """
The right side of `matches` is a Python regular expression and this one does not compile.
In a string, a backslash is written `\\\\`.

    role matches "(chief|ceo"       # wrong: unclosed group
    role matches "(chief|ceo)"      # right
""",
    ),
    _code(
        "T013",
        "error",
        "regular expression not supported",
        """
`matches` takes Python's regular-expression syntax but runs it on RE2, an engine whose time
is linear in the length of the text, so no pattern can stall the engine on a long property.
RE2 cannot run lookahead and lookbehind (`(?=...)`, `(?!...)`, `(?<=...)`, `(?<!...)`),
backreferences (`\\\\1`, `(?P=name)`), `(?x)` verbose patterns, or patterns whose compiled
program is very large. Match the parts separately instead:

    email matches "^(?!test).*@example\\\\.com$"                        # wrong: lookahead
    email matches "@example\\\\.com$" and not email starts with "test"   # right
""",
    ),
    _code(
        "T011",
        "error",
        "no fields",
        """
`.NAME` reads a field of an event, an object, or each object of a list. Numbers, text and
other plain values have no fields.

    when score.total > 5                       # wrong
    when last(order_completed).total > 5       # right
""",
    ),
    _code(
        "T012",
        "error",
        "bad value",
        """
A value has the wrong shape for its place: a `cap` counts whole sends (at least 1), a
`decay` takes positive points or a percent up to 100%, `max` is positive, a tag is text
and not empty, message fields take quoted strings (`headers` and `json` take objects), the
names in `headers` are header names (letters, digits and `-`: no space, no colon), and every
duration (`wait`, `within`, `up to`, `reenter after`, a cap's or a decay's period) is longer
than zero (a constant with no sign, an infinite duration times zero, is not). The durations
of `goal ... within` and `reenter after` are constants: they read nothing of the contact or
of its event (`reenter after event.days` is wrong, declared or not).
An object literal `{key: expr}` is written only where a step or a message takes one: after
`send MESSAGE with`, as a message's `headers` or `json`, and as a value or list item inside
those; not in a condition, a metric, a segment, a `set` or a trait's default. In a message's
`headers` or `json`, an object whose only key is `$expr` or `$value` is an error too: that is
how the compiled program marks a computed value, so it would be taken for one (add another
key or rename it).

    cap email 1.5 per 1d     # wrong
    cap email 2 per 1d       # right
    wait -1d                 # wrong: time only runs forward
    segment s = {a: 1} == none             # wrong: no object literal in a condition
    send deal with {code: "A1"}            # right
    json {"$value": "{{ id }}"}            # wrong: the only key marks a computed value
    headers {"X Campaign": "spring"}       # wrong: a header name has no space
    tag ""                                 # wrong: a tag with no name
""",
    ),
    _code(
        "F001",
        "error",
        "split percents do not sum to 100%",
        """
The arms of a `split` must share all contacts: their percents must add up to exactly 100%,
compared as the decimals written (no rounding). Three times 33.33% is 99.99%: one contact in
ten thousand would fall in no arm; 50.002% and 50.002% make 100.004%, which is wrong too.

    split subject_test:
      33.33% a: send deal_a
      33.33% b: send deal_b
      33.33% c: send deal_c      # wrong: 99.99%
      33.34% c: send deal_c      # right: 100%
""",
    ),
    _code(
        "F002",
        "error",
        "unreachable step",
        """
Steps after `exit`, or after an `if`/`split` whose every path ends with `exit`, can never
run. It is an error because it is always a mistake: a step meant for another branch, or a
stray `exit`.

    exit
    send deal      # wrong: never sent
""",
    ),
    _code(
        "F003",
        "error",
        "template does not compile",
        """
A message template (a string or a `file`) is Jinja2 and does not compile: an unclosed
`{{` or `{% if %}`, an unknown filter. The location is in the string, or the line of the
template file.

    subject "Hi {{ first_name }"        # wrong
    subject "Hi {{ first_name }}"       # right
""",
    ),
    _code(
        "F004",
        "error",
        "template variable with no value",
        """
A template reads a variable that nothing provides. Available: traits (built-in and
declared), `score`, `tags`, `id`, `now`, metrics, segments, `event`, `contact`, and the keys
of a `send MESSAGE with {...}` of that message. Give other variables a default.

    subject "Hi {{ nickname }}"                         # wrong
    subject "Hi {{ nickname | default(\\"there\\") }}"     # right
""",
    ),
    _code(
        "F005",
        "error",
        "message without channel",
        """
Every message says how it is delivered: `channel email`, `channel sms` or `channel push`.

    message deal:
      channel email            # add this line
      subject "20% off"
      text "Hi {{ first_name }}"
""",
    ),
    _code(
        "F006",
        "error",
        "message without body",
        """
A message has nothing to deliver: an email needs `html` or `text`, an SMS `text`, a push
`json`, `text` or `title`.

    message flash:
      channel sms
      text "Flash sale today"    # add the body
""",
    ),
    _code(
        "F007",
        "error",
        "template file missing",
        """
`html file "x"` (or `text file "x"`) names a file that cannot be read, is not UTF-8
text, or is larger than 4 MB. The path is relative to the `.lead` file that declares the
message.

    html file "templates/deal.html"    # from the folder of this .lead file
""",
    ),
    _code(
        "F008",
        "error",
        "channel disagrees",
        """
`send CHANNEL MESSAGE` names a channel, and the message is declared with another one. The
channel comes from the message; writing it in the `send` is an optional check.

    message flash:
      channel sms
    send email flash      # wrong
    send sms flash        # right (or just `send flash`)
""",
    ),
    _code(
        "F009",
        "error",
        "trigger never true",
        """
A `when` trigger provably never holds, so the flow never starts from it: the score is
never negative nor above its `max`, a sigmoid metric is between 0% and 100%, counts are never
negative, and contradictory comparisons of one value never hold together.

    when score > 50 and score < 10       # wrong: contradictory
    when propensity > 100%               # wrong: propensity is a sigmoid
""",
    ),
    _code(
        "F010",
        "error",
        "trigger always true",
        """
A `when` trigger provably always holds, so it would enroll every contact the first time it
is evaluated. Use `on EVENT` for "as soon as they appear", or a real condition.

    when true            # wrong
    when score >= 0      # wrong: the score is never negative
""",
    ),
    _code(
        "F011",
        "warning",
        "two sends with no wait",
        """
Two messages are sent on the same path with nothing between them that lets time pass
(`wait`, `wait until`, `wait for`, `check ... within`), also across an `if` or `split`:
contacts receive both at once, which is rarely what anybody wants.

    send welcome
    send offer          # warned
    send welcome
    wait 2d
    send offer          # fine
""",
    ),
    _code(
        "F012",
        "warning",
        "flow never entered",
        """
The flow has no trigger (`on EVENT`, `when COND`) and no flow `enroll`s it, so no contact
can ever enter it.

    flow loyalty:          # add `on order_completed`, or `enroll loyalty` elsewhere
      send thanks
""",
    ),
    _code(
        "F013",
        "error",
        "duplicate split arm",
        """
Two arms of one `split` have the same name, so effects could not tell them apart.

    split t:
      50% a: send deal_a
      50% a: send deal_b     # wrong: name it `b`
""",
    ),
    _code(
        "F020",
        "error",
        "enroll cycle that never settles",
        """
Flows that `enroll` each other in a cycle, each with `reenter always`, none of them waiting
anywhere, each enrolling the next on every run (not under an `if`, a split arm or a
`check`'s `else`, nor after a `check` or an `exit`), enter one another at the same instant
forever: a chain that never settles, which the language makes an error where the checker can
see it. Let time pass somewhere on the cycle, or let one flow be entered again only later.
A cycle through a condition is F022, a warning.

    flow a:
      reenter always
      enroll b
    flow b:
      reenter always
      enroll a            # error: a -> b -> a
      wait 1d             # fine if the `wait` comes before `enroll a`
""",
    ),
    _code(
        "F021",
        "warning",
        "empty quiet hours",
        """
`quiet hours A to A` starts and ends at the same time, so the window is empty and no send is
ever held back. Give it a length, or remove it.

    settings:
      quiet hours 09:00 to 09:00     # warned: holds nothing back
      quiet hours 21:00 to 08:00     # sends between 21:00 and 08:00 wait until 08:00
""",
    ),
    _code(
        "F022",
        "warning",
        "enroll cycle that may never settle",
        """
Flows that `enroll` each other in a cycle, each with `reenter always` and no wait before its
`enroll`, where some `enroll` on the cycle is under a condition (`if`, a split arm, a
`check`'s `else`) or some flow may wait on another path: the chain goes round at one instant
for as long as the conditions let it. It may settle (a counter that reaches its limit); if it
does not, `simulate` and `serve` stop it and report it (a `stop` effect, and a line on
standard error). Make sure a condition on the way turns, or let time pass on the cycle.

    flow ping:
      reenter always
      score +1
      if score < 60:
        enroll pong       # warned: ping -> pong -> ping while the score is under 60
    flow pong:
      reenter always
      enroll ping
""",
    ),
]

CODES: dict[str, CodeInfo] = {info.code: info for info in _ALL}

GROUPS = (
    ("S", "Syntax and files"),
    ("N", "Names"),
    ("T", "Types"),
    ("F", "Flows and messages"),
)


def markdown_index(preamble: str) -> str:
    """docs/diagnostics.md: the preamble, a table of every code, then each explanation."""
    out = [preamble.rstrip() + "\n"]
    out.append("## Index\n")
    out.append("| code | severity | summary |\n|---|---|---|")
    for info in sorted(CODES.values(), key=lambda i: ("SNTF".index(i.code[0]), i.code)):
        out.append(f"| [{info.code}](#{info.code.lower()}) | {info.severity} | {info.summary} |")
    out.append("")
    for letter, title in GROUPS:
        out.append(f"## {title}\n")
        for info in sorted(CODES.values(), key=lambda i: i.code):
            if info.code[0] != letter:
                continue
            out.append(f'<a id="{info.code.lower()}"></a>')
            out.append(f"### {info.code}: {info.summary} ({info.severity})\n")
            out.append(_markdown_explanation(info.explanation) + "\n")
    return "\n".join(out)


def _markdown_explanation(text: str) -> str:
    """Indented example lines become fenced code blocks."""
    out: list[str] = []
    in_code = False
    for line in text.splitlines():
        is_code = line.startswith("    ")
        if is_code != in_code:  # entering or leaving an example
            out.append("```")
        in_code = is_code
        out.append(line[4:] if is_code else line)
    if in_code:
        out.append("```")
    return "\n".join(out)
