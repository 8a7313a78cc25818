"""The abstract syntax tree of a `.lead` script: frozen attrs classes, data only.

Every node carries the `span` it was parsed from. Names that a later pass resolves
(events, messages, flows, traits) are kept as `Ident`s so diagnostics can point at them.
Nothing here knows about Lark; `syntax/build.py` builds these nodes and the interpreter
passes read them.
"""

from __future__ import annotations

from typing import Literal, TypeAlias, TypeVar, dataclass_transform

import attrs

from leadlang.source import Span

_T = TypeVar("_T")


# A plain alias (`node = attrs.frozen(...)`) hides the attrs signature from mypy, which then
# rejects every keyword constructor call; `dataclass_transform` tells it what `node` does.
@dataclass_transform(frozen_default=True, kw_only_default=True, field_specifiers=(attrs.field,))
def node(cls: type[_T]) -> type[_T]:
    return attrs.frozen(cls, slots=True, kw_only=True)


@node
class Ident:
    """A name as written, e.g. the `deal` in `send deal`."""

    name: str
    span: Span


# ---------------------------------------------------------------- expressions


@node
class Number:
    value: float | int
    span: Span
    percent: bool = False  # written `60%`; `value` is already 0.6


@node
class String:
    value: str
    span: Span


@node
class Bool:
    value: bool
    span: Span


@node
class NoneLit:
    span: Span


@node
class Duration:
    """`30s`, `24h`, `1d12h`: a whole number of seconds."""

    seconds: int
    text: str
    span: Span
    valid: bool = True  # False after an S005 (`3mo`): `seconds` is then a placeholder


@node
class Date:
    """`2025-10-01`: the start of that day in the script's time zone."""

    text: str
    span: Span


@node
class DateTime:
    """`2025-10-01T09:00`, `...Z`, `...+02:00`; no offset means the script's time zone."""

    text: str
    span: Span


@node
class Time:
    """A time of day, `09:00` or `21:30:15`."""

    hour: int
    minute: int
    span: Span
    second: int = 0


@node
class ListLit:
    items: tuple[Expr, ...]
    span: Span


@node
class ObjectEntry:
    key: str  # an identifier or a quoted string, unquoted here
    value: Expr
    span: Span
    key_span: Span  # the key as written


@node
class ObjectLit:
    entries: tuple[ObjectEntry, ...]
    span: Span


@node
class Name:
    """A bare name in an expression: a trait, property, metric, segment or built-in."""

    name: str
    span: Span


@node
class Attr:
    """`obj.field`; also `event.total` and `last(order_completed).total`."""

    obj: Expr
    name: Ident
    span: Span


BinaryOperator: TypeAlias = Literal[
    "or",
    "and",
    "==",
    "!=",
    "<",
    "<=",
    ">",
    ">=",
    "contains",
    "starts with",
    "ends with",
    "in",
    "not in",
    "matches",
    "+",
    "-",
    "*",
    "/",
    "%",
]
UnaryOperator: TypeAlias = Literal["not", "-"]

# How tightly each binary operator binds (higher binds tighter), for the parser and the
# unparser alike. Prefix `not` sits between `and` and the comparisons (`not a == b` is
# `not (a == b)`); prefix `-` binds tighter than any binary operator.
BINARY_PRECEDENCE: dict[str, int] = {
    "or": 1,
    "and": 2,
    **dict.fromkeys(
        (
            "==",
            "!=",
            "<",
            "<=",
            ">",
            ">=",
            "contains",
            "starts with",
            "ends with",
            "in",
            "not in",
            "matches",
        ),
        4,
    ),
    "+": 5,
    "-": 5,
    "*": 6,
    "/": 6,
    "%": 6,
}
NOT_PRECEDENCE = 3


@node
class Binary:
    op: BinaryOperator
    left: Expr
    right: Expr
    span: Span
    op_span: Span


@node
class Unary:
    op: UnaryOperator
    operand: Expr
    span: Span


@node
class Call:
    """`f(args)`, including aggregates: `count(added_to_cart where total > 5 within 30d)`.

    For aggregates the first argument names the event (`Name`) or the event property
    (`Attr(Name(event), prop)`); `where` and `within` are the optional clauses.
    """

    func: Ident
    args: tuple[Expr, ...]
    span: Span
    where: Expr | None = None
    within: Expr | None = None


Expr: TypeAlias = (
    Number
    | String
    | Bool
    | NoneLit
    | Duration
    | Date
    | DateTime
    | Time
    | ListLit
    | ObjectLit
    | Name
    | Attr
    | Binary
    | Unary
    | Call
)

# ---------------------------------------------------------------- event references


@node
class EventRef:
    """An event named by a trigger, score rule, `wait for`, `goal` or `exit on`.

    `name` is already normalised (`"Order Completed"` -> `order_completed`);
    `quoted` says it was written as a string.
    """

    name: str
    span: Span
    quoted: bool = False


# ---------------------------------------------------------------- declarations


@node
class Use:
    """`use std.segments` (module) or `use "common/brand.lead"` (path)."""

    target: str
    is_path: bool
    span: Span


@node
class TimezoneSetting:
    timezone: String
    span: Span


@node
class QuietHoursSetting:
    start: Time
    end: Time
    span: Span


@node
class CapSetting:
    channel: Ident
    count: Number
    per: Duration
    span: Span


Setting: TypeAlias = TimezoneSetting | QuietHoursSetting | CapSetting


@node
class Settings:
    items: tuple[Setting, ...]
    span: Span


TypeName: TypeAlias = Literal[
    "number", "text", "bool", "datetime", "duration", "time", "list", "object"
]


@node
class TypeRef:
    name: str  # one of TypeName when valid; the checker reports others
    span: Span


@node
class Param:
    name: Ident
    type: TypeRef
    span: Span


@node
class EventDecl:
    name: Ident
    params: tuple[Param, ...]
    span: Span


@node
class TraitDecl:
    name: Ident
    type: TypeRef | None
    default: Expr | None
    span: Span


@node
class ScoreRule:
    """`order_completed +25 where total > 100`."""

    event: EventRef
    points: Number  # signed
    where: Expr | None
    span: Span


@node
class Decay:
    """`decay 10 every 7d idle` or `decay 10% every 7d idle`."""

    amount: Number  # `percent` set on the Number for the percent form (value 0.1)
    every: Duration
    span: Span


@node
class ScoreMax:
    value: Number
    span: Span


@node
class ScoreBlock:
    rules: tuple[ScoreRule, ...]
    decays: tuple[Decay, ...]  # more than one is an error the checker reports
    maxes: tuple[ScoreMax, ...]  # likewise
    span: Span


@node
class MetricDecl:
    name: Ident
    expr: Expr
    span: Span


@node
class SegmentDecl:
    name: Ident
    expr: Expr
    span: Span


@node
class MessageField:
    """One line of a message block: `KEY [file] VALUE`.

    `channel email` is `MessageField(key=channel, value=Name("email"))`;
    `html file "t.html"` has `from_file=True`; `headers {...}` / `json {...}` take objects.
    """

    key: Ident
    value: Expr
    from_file: bool
    span: Span


@node
class MessageDecl:
    name: Ident
    fields: tuple[MessageField, ...]
    span: Span


# ---------------------------------------------------------------- flows: header clauses


@node
class OnTrigger:
    event: EventRef
    where: Expr | None
    span: Span


@node
class WhenTrigger:
    cond: Expr
    span: Span


@node
class ExitOn:
    event: EventRef
    where: Expr | None
    span: Span


@node
class ExitWhen:
    cond: Expr
    span: Span


@node
class Goal:
    event: EventRef
    where: Expr | None
    within: Expr | None
    span: Span


@node
class Reenter:
    mode: Literal["never", "always", "after"]
    after: Expr | None  # a Duration for mode "after"
    span: Span


@node
class Edits:
    """What `serve` does with in-flight enrollments when the flow is edited."""

    mode: Literal["keep", "migrate"]
    span: Span


HeaderClause: TypeAlias = OnTrigger | WhenTrigger | ExitOn | ExitWhen | Goal | Reenter | Edits

# ---------------------------------------------------------------- flows: steps


@node
class Send:
    channel: Ident | None
    message: Ident  # `send deal` and `send "deal"` both give Ident("deal")
    with_: ObjectLit | None
    span: Span


@node
class Wait:
    duration: Expr
    span: Span


@node
class WaitUntil:
    target: Expr
    span: Span


@node
class WaitFor:
    event: EventRef
    where: Expr | None
    up_to: Expr
    else_: tuple[Step, ...] | None
    span: Span


@node
class Check:
    cond: Expr
    within: Expr | None
    else_: tuple[Step, ...] | None
    span: Span


@node
class Branch:
    cond: Expr
    steps: tuple[Step, ...]
    span: Span


@node
class If:
    branches: tuple[Branch, ...]  # the `if` then each `elif`
    else_: tuple[Step, ...] | None
    span: Span


@node
class SplitArm:
    percent: Number
    name: Ident | None  # defaults a, b, c... are assigned by the interpreter
    steps: tuple[Step, ...]
    span: Span


@node
class Split:
    name: Ident
    arms: tuple[SplitArm, ...]
    span: Span


@node
class Tag:
    tag: Expr
    span: Span


@node
class Untag:
    tag: Expr
    span: Span


@node
class SetTrait:
    trait: Ident
    value: Expr
    span: Span


@node
class ScoreAdjust:
    points: Number  # signed
    span: Span


@node
class Enroll:
    flow: Ident
    span: Span


@node
class ExitStep:
    span: Span


Step: TypeAlias = (
    Send
    | Wait
    | WaitUntil
    | WaitFor
    | Check
    | If
    | Split
    | Tag
    | Untag
    | SetTrait
    | ScoreAdjust
    | Enroll
    | ExitStep
)


@node
class FlowDecl:
    """A flow block, or a one-line `when/on ... then ...` flow (`one_line=True`).

    One-line flows are named `FILESTEM:LINE` by the parser (e.g. `deal:1`).
    """

    name: Ident
    header: tuple[HeaderClause, ...]
    steps: tuple[Step, ...]
    span: Span
    one_line: bool = False


Decl: TypeAlias = (
    Use
    | Settings
    | EventDecl
    | TraitDecl
    | ScoreBlock
    | MetricDecl
    | SegmentDecl
    | MessageDecl
    | FlowDecl
)


@node
class Module:
    """One parsed file. `decls` holds whatever parsed; syntax errors are reported beside it."""

    path: str
    decls: tuple[Decl, ...]
    span: Span
