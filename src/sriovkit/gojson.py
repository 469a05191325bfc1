"""JSON read the way Go's encoding/json reads it into upstream's structs.

Every input sriovkit shares with a Go component (the device plugin's config.json, sriov-cni
netconfs, runtimeConfig) is decoded here, so they all accept what upstream accepts:

- object keys match a struct field exactly first, else case-insensitively with Go's folding
  (ASCII case, plus the two non-ASCII runes that fold onto ASCII: U+017F and U+212A);
- a key given twice: the last one wins, and a struct, slice element or map given twice is
  decoded into what the first one left (Go merges);
- unknown keys are ignored (reported as notices, so callers can warn, or refuse in strict mode);
- ``null`` leaves a value field as it was and clears a pointer, slice or map;
- numbers must fit the Go type: ``1.0`` or ``1e2`` is not an int, ``-0`` is no uint, 2**64 is
  no int64; ``NaN``/``Infinity`` are not JSON at all;
- invalid UTF-8 and lone surrogate escapes inside strings become U+FFFD (a notice);
- a wrong JSON type at a known field is a problem (Go's UnmarshalTypeError), collected for every
  field rather than only the first.

Unlike Go, nesting is limited to `MAX_DEPTH` levels: Python's parser recurses, and no real
config is nested more than a handful of levels. `parse` never raises anything but
`JsonSyntaxError`, whatever the bytes. Pure: no I/O.
"""

from __future__ import annotations

import codecs
import json
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from itertools import accumulate
from typing import Any

from sriovkit.errors import SriovkitError

MAX_DEPTH = 256
_REPLACE_ONE_BYTE = "sriovkit-gojson"
_STRING = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"', re.S)
_NOT_BRACKET = re.compile(r"[^\[\]{}]+")
_BRACKET_DELTA = {"[": 1, "{": 1, "]": -1, "}": -1}
_SURROGATE = re.compile(r"[\ud800-\udfff]")
_PLAIN_KEY = re.compile(r"^[A-Za-z0-9_*:./-]+$")
# the runes outside ASCII whose Go fold set's smallest rune is an ASCII letter (encoding/json's foldRune)
_NON_ASCII_FOLDS = str.maketrans({"\u017f": "S", "\u212a": "K"})
_HUGE_DIGITS = 40  # longer integer literals are kept as text: Python caps int() at 4300 digits


def _replace_one_byte(exc: UnicodeError) -> tuple[str, int]:
    """Go replaces each invalid byte by one U+FFFD; Python's 'replace' merges some runs."""
    assert isinstance(exc, UnicodeDecodeError)
    return "\ufffd", exc.start + 1


codecs.register_error(_REPLACE_ONE_BYTE, _replace_one_byte)


class JsonError(SriovkitError, ValueError):
    """JSON that cannot be read as a value: Go's decoder refuses it (`JsonSyntaxError`), or it holds
    a number no float64 can (`NumberRangeError`). What callers of `parse` + `plain` catch."""


class JsonSyntaxError(JsonError):
    """Text Go's decoder refuses: a syntax error, a non-finite literal, or nesting too deep."""


class NumberRangeError(JsonError):
    """A number Go's float64 cannot hold, read into interface{} (Go: "cannot unmarshal number")."""


class Pairs(list[tuple[str, Any]]):
    """A JSON object as parsed: its members in document order, duplicate keys kept."""


@dataclass(frozen=True, slots=True)
class Number:
    """A number literal Python cannot hold as Go would: ``-0`` (no uint) or a huge integer."""

    literal: str

    def __str__(self) -> str:
        return self.literal


class Float(float):
    """A number literal with a fraction or exponent; keeps its text for messages."""

    literal: str

    def __new__(cls, literal: str) -> Float:
        obj = super().__new__(cls, literal)
        obj.literal = literal
        return obj


@dataclass(frozen=True, slots=True)
class Parsed:
    value: Any
    replaced_bytes: int = 0  # invalid UTF-8 bytes read as U+FFFD


def parse(raw: bytes | str) -> Parsed:
    """JSON text as a tree of None/bool/int/Float/Number/str/list/Pairs."""
    replaced = 0
    if isinstance(raw, bytes | bytearray | memoryview):
        data = bytes(raw)
        text = data.decode("utf-8", _REPLACE_ONE_BYTE)
        replaced = text.count("\ufffd") - data.count("\ufffd".encode())
    else:
        text = raw
    # no document with fewer brackets can nest too deep: most configs skip the count
    if text.count("[") + text.count("{") > MAX_DEPTH and (depth := nesting_depth(text)) > MAX_DEPTH:
        raise JsonSyntaxError(f"nested {depth} levels deep, more than the {MAX_DEPTH} accepted")
    try:
        value = json.loads(text, object_pairs_hook=Pairs, parse_constant=_refuse_constant,
                           parse_int=_integer, parse_float=Float)
    except JsonSyntaxError:
        raise
    except json.JSONDecodeError as exc:
        raise JsonSyntaxError(f"invalid JSON at line {exc.lineno} column {exc.colno}: {exc.msg}") from None
    except (ValueError, RecursionError) as exc:  # e.g. a surrogate Python's codec cannot take
        raise JsonSyntaxError(f"invalid JSON: {exc}") from None
    return Parsed(value, max(replaced, 0))


def nesting_depth(text: str) -> int:
    """How deep arrays and objects nest, counted without recursing (strings skipped); C-speed
    iterators only, as hostile input may hold millions of brackets."""
    brackets = _NOT_BRACKET.sub("", _STRING.sub("", text))
    if len(brackets) < 2:
        return len(brackets)
    return max(0, max(accumulate(map(_BRACKET_DELTA.__getitem__, brackets))))


def _refuse_constant(name: str) -> Any:
    raise JsonSyntaxError(f"invalid JSON: {name} is not a JSON value")


def _integer(literal: str) -> int | Number:
    if literal == "-0" or len(literal) > _HUGE_DIGITS:
        return Number(literal)
    return int(literal)


def fold(name: str) -> str:
    """A key as Go's encoding/json folds it to match a field case-insensitively: ASCII letters to
    upper case, U+017F and U+212A to S and K (the smallest rune of their fold sets); every other
    non-ASCII rune stays itself (Python's upper() would turn U+0131 into I, which Go does not)."""
    if name.isascii():
        return name.upper()
    return "".join(c.upper() if c.isascii() else c for c in name.translate(_NON_ASCII_FOLDS))


def lookup(obj: Mapping[str, Any], name: str, default: Any = None) -> Any:
    """What Go's encoding/json decodes into a struct field `name` from the object `obj`: each key
    equal to it, or folding to it, sets the field in turn, so the last such key wins; `default`
    when none does."""
    folded, found = fold(name), default
    for key, value in obj.items():
        if isinstance(key, str) and (key == name or fold(key) == folded):
            found = value
    return found


def member(path: str, key: str) -> str:
    """JSON path of `key` under `path`; odd keys (spaces, newlines) are quoted so a problem
    always stays on one line."""
    if _PLAIN_KEY.match(key):
        return f"{path}.{key}" if path else key
    return f"{path}[{json.dumps(key)}]"


def show(value: Any, limit: int = 80) -> str:
    """A value for a one-line message, shortened; never raises, whatever it is."""
    try:
        text = json.dumps(plain(value), sort_keys=True)
    except (TypeError, ValueError, RecursionError):
        text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def plain(value: Any) -> Any:
    """A parsed tree as ordinary JSON values (objects as dicts, last duplicate wins), as Go reads
    it into interface{}. Numbers Go's float64 cannot hold raise NumberRangeError."""
    if isinstance(value, Pairs):
        return {sanitize(k): plain(v) for k, v in value}
    if isinstance(value, list):
        return [plain(v) for v in value]
    if isinstance(value, str):
        return sanitize(value)
    if isinstance(value, Number):
        number = float(value.literal)
        if math.isinf(number):
            raise NumberRangeError(f"number {value.literal} does not fit a float64")
        return 0 if value.literal == "-0" else int(value.literal)
    if isinstance(value, Float):
        if math.isinf(value):
            raise NumberRangeError(f"number {value.literal} does not fit a float64")
        return float(value)
    return value


class TooLarge(SriovkitError, ValueError):
    """Loaded data with more values than a config can sensibly hold (e.g. YAML aliases expanded)."""


MAX_VALUES = 200_000


def as_tree(value: Any, max_values: int = MAX_VALUES) -> Any:
    """Already-loaded data (dicts, lists; YAML's too) as `parse` would have given it, for callers
    that hold data rather than text. Shared values (YAML aliases) count each time they appear:
    more than `max_values` raise `TooLarge` instead of expanding without end."""
    budget = [max_values]
    return _as_tree(value, budget)


def _as_tree(value: Any, budget: list[int]) -> Any:
    budget[0] -= 1
    if budget[0] < 0:
        raise TooLarge("more values than a config can hold (aliases expanded?)")
    if isinstance(value, Pairs):
        return value
    if isinstance(value, Mapping):
        return Pairs((str(k), _as_tree(v, budget)) for k, v in value.items())
    if isinstance(value, list | tuple):
        return [_as_tree(v, budget) for v in value]
    if isinstance(value, float) and not isinstance(value, Float):
        return Float(repr(value))
    return value


def schema_of(model: Any) -> GoType:
    """The Go-style type of a pydantic model's input: fields under their aliases, each typed
    from its annotation, so our own files decode with the same rules as upstream's."""
    return _type_of(model)


def _type_of(annotation: Any) -> GoType:
    import enum
    import types
    import typing

    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin in (typing.Union, types.UnionType):
        inner = [a for a in args if a is not type(None)]
        return Ptr(_type_of(inner[0])) if len(inner) == 1 else Any_()
    if origin in (tuple, list):
        return Slice(_type_of(args[0])) if args else Slice(Any_())
    if hasattr(annotation, "model_fields"):
        return Struct(tuple(Field(info.alias or name, _type_of(info.annotation))
                            for name, info in annotation.model_fields.items()))
    if isinstance(annotation, type) and issubclass(annotation, bool):
        return Bool()
    if isinstance(annotation, type) and issubclass(annotation, enum.Enum) and issubclass(annotation, str):
        return String()
    if annotation is str:
        return String()
    if annotation is int:
        return Int()
    return Any_()


def sanitize(text: str) -> str:
    """Lone surrogates (``"\\ud800"``) as Go reads them: U+FFFD."""
    return _SURROGATE.sub("\ufffd", text) if _SURROGATE.search(text) else text


# -- Go types ----------------------------------------------------------------------------------
NO_VALUE: Any = type("NoValue", (), {"__repr__": lambda self: "NO_VALUE"})()  # a Problem about no one value


@dataclass(frozen=True, slots=True)
class Problem:
    """One thing wrong (or, as a notice, ignored) at a JSON path."""

    path: str
    message: str
    value: Any
    consequence: str = ""  # for a notice: what comes of it ("ignored", "the last one is used")

    def line(self, source: str) -> str:
        # path and message may quote input (a key, a pfNames name): escaped, so a line stays one
        where = f"{one_line(source)}: {one_line(self.path)}: " if self.path else f"{one_line(source)}: "
        if self.value is NO_VALUE:
            return f"{where}{one_line(self.message)}"
        return f"{where}{one_line(self.message)} (value: {show(self.value)})"


def one_line(text: str) -> str:
    """`text` with every character that is not printable (newlines, control and format
    characters, lone surrogates) written as its Python escape: a message quoting input stays
    one line and shows what was there."""
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else c.encode("unicode_escape", "backslashreplace").decode("ascii")
                   for c in text)


IGNORED = "ignored, as upstream ignores it"
LAST_WINS = "the last one is used, as upstream uses it"


@dataclass(slots=True)
class Report:
    """What decoding found: `problems` Go would refuse, `notices` Go silently accepts."""

    problems: list[Problem] = field(default_factory=list)
    notices: list[Problem] = field(default_factory=list)

    def problem(self, path: str, message: str, value: Any) -> None:
        self.problems.append(Problem(path, message, value))

    def notice(self, path: str, message: str, value: Any, consequence: str = IGNORED) -> None:
        self.notices.append(Problem(path, message, value, consequence))


class GoType:
    """How one Go type decodes a JSON value; `existing` is what an earlier duplicate left."""

    what = "a value"
    nullable = False  # a pointer, slice, map or interface: null clears it

    def decode(self, value: Any, existing: Any, path: str, report: Report) -> Any:
        raise NotImplementedError

    def zero(self) -> Any:
        return None

    def refuse(self, value: Any, path: str, report: Report) -> Any:
        report.problem(path, f"must be {self.what}", plain_or_text(value))
        return None


def plain_or_text(value: Any) -> Any:
    """`plain`, with numbers no float64 holds shown as their literal text (for messages)."""
    if isinstance(value, Pairs):
        return {sanitize(k): plain_or_text(v) for k, v in value}
    if isinstance(value, list):
        return [plain_or_text(v) for v in value]
    try:
        return plain(value)
    except NumberRangeError:
        return value.literal if isinstance(value, Number | Float) else str(value)


class String(GoType):
    what = "a string"

    def decode(self, value: Any, existing: Any, path: str, report: Report) -> Any:
        return sanitize(value) if isinstance(value, str) else self.refuse(value, path, report)

    def zero(self) -> Any:
        return ""


class Bool(GoType):
    what = "true or false"

    def decode(self, value: Any, existing: Any, path: str, report: Report) -> Any:
        return value if isinstance(value, bool) else self.refuse(value, path, report)

    def zero(self) -> Any:
        return False


@dataclass(frozen=True)
class Int(GoType):
    """A Go integer type: `bits` wide, signed or not (Go's int is 64 bits here)."""

    bits: int = 64
    signed: bool = True

    @property
    def what(self) -> str:  # type: ignore[override]
        if self.bits == 64:
            return "an integer of 64 bits" if self.signed else "an integer from 0 to 2^64-1"
        lo, hi = self.bounds
        return f"an integer from {lo} to {hi}"

    @property
    def bounds(self) -> tuple[int, int]:
        if self.signed:
            return -(1 << (self.bits - 1)), (1 << (self.bits - 1)) - 1
        return 0, (1 << self.bits) - 1

    def decode(self, value: Any, existing: Any, path: str, report: Report) -> Any:
        lo, hi = self.bounds
        if isinstance(value, Number):
            if value.literal == "-0" and self.signed:
                return 0
            return self.refuse(value, path, report)
        if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
            return self.refuse(value, path, report)
        return value

    def zero(self) -> Any:
        return 0


class Any_(GoType):
    """interface{} (and map[string]interface{} at the top): any JSON value, as plain data."""

    what = "JSON"
    nullable = True

    def decode(self, value: Any, existing: Any, path: str, report: Report) -> Any:
        try:
            return plain(value)
        except NumberRangeError as exc:
            report.problem(path, str(exc), str(value))
            return None


class Raw(GoType):
    """json.RawMessage: kept as parsed (duplicates included) for a later, typed decode."""

    nullable = True

    def decode(self, value: Any, existing: Any, path: str, report: Report) -> Any:
        return value


@dataclass(frozen=True)
class Object(GoType):
    """A JSON object required, anything inside (e.g. map[string]interface{})."""

    what = "an object"
    nullable = True

    def decode(self, value: Any, existing: Any, path: str, report: Report) -> Any:
        if not isinstance(value, Pairs):
            return self.refuse(value, path, report)
        return Any_().decode(value, existing, path, report)


@dataclass(frozen=True)
class Slice(GoType):
    elem: GoType
    nullable = True

    @property
    def what(self) -> str:  # type: ignore[override]
        return f"a list of {self.elem.what.removeprefix('a ').removeprefix('an ')}s" \
            if isinstance(self.elem, String) else "a list"

    def decode(self, value: Any, existing: Any, path: str, report: Report) -> Any:
        if not isinstance(value, list) or isinstance(value, Pairs):
            return self.refuse(value, path, report)
        old = existing if isinstance(existing, list) else []
        out = []
        for i, item in enumerate(value):
            before = old[i] if i < len(old) else None
            out.append(decode_value(self.elem, item, before, f"{path}[{i}]", report))
        return out


@dataclass(frozen=True)
class Map(GoType):
    """map[string]T: keys exact (maps do not fold), a key given twice: the last one."""

    elem: GoType
    what = "an object"
    nullable = True

    def decode(self, value: Any, existing: Any, path: str, report: Report) -> Any:
        if not isinstance(value, Pairs):
            return self.refuse(value, path, report)
        out = dict(existing) if isinstance(existing, dict) else {}
        for key, item in value:
            out[sanitize(key)] = decode_value(self.elem, item, None, member(path, key), report)
        return out


@dataclass(frozen=True)
class Ptr(GoType):
    """*T: null clears it; otherwise T, decoded into what was there."""

    elem: GoType
    nullable = True

    @property
    def what(self) -> str:  # type: ignore[override]
        return self.elem.what

    def decode(self, value: Any, existing: Any, path: str, report: Report) -> Any:
        return self.elem.decode(value, existing, path, report)


@dataclass(frozen=True)
class Field:
    """A struct field as Go's json tag names it; `note` marks fields upstream has but ignores
    for this input (decoded for their type, then reported)."""

    name: str
    type: GoType
    note: str = ""


@dataclass(frozen=True)
class Struct(GoType):
    """A Go struct: fields matched exactly, then by Go's folding (first field in order wins).

    `unknown` is the notice for a key no field takes; empty means ignore such keys quietly
    (runtimeConfig carries every capability the runtime knows, most not ours)."""

    fields: tuple[Field, ...]
    unknown: str = "unknown field"
    keep_unknown: bool = False  # carry unknown keys along as plain data (a config passed on to a plugin)
    what = "an object"
    # the fields by exact name and by folded name, built once (not compared, not shown)
    _exact: dict[str, Field] = field(init=False, repr=False, compare=False)
    _folded: dict[str, Field] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        exact = {f.name: f for f in self.fields}
        folded: dict[str, Field] = {}
        for f in self.fields:
            folded.setdefault(fold(f.name), f)
        object.__setattr__(self, "_exact", exact)
        object.__setattr__(self, "_folded", folded)

    def lookup(self, key: str) -> Field | None:
        found = self._exact.get(key)
        return found if found is not None else self._folded.get(fold(key))

    def decode(self, value: Any, existing: Any, path: str, report: Report) -> Any:
        if not isinstance(value, Pairs):
            return self.refuse(value, path, report)
        out: dict[str, Any] = dict(existing) if isinstance(existing, dict) else {}
        seen: dict[str, str] = {}  # field -> the key that gave it first in this object
        for key, item in value:
            where = member(path, key)
            f = self.lookup(key)
            if f is not None and f.name in seen:
                report.notice(where, f"{f.name} given again (first as {seen[f.name]})", plain_or_text(item),
                              LAST_WINS)
            elif f is not None:
                seen[f.name] = key
            if f is None:
                if self.unknown:
                    report.notice(where, self.unknown, plain_or_text(item))
                if self.keep_unknown:
                    out[sanitize(key)] = plain_or_text(item)
                continue
            decoded = decode_value(f.type, item, out.get(f.name), where, report)
            if decoded is None and item is not None:
                continue  # a refused value leaves the field as it was, as Go does
            if decoded is None:
                out.pop(f.name, None)
            else:
                out[f.name] = decoded
            if f.note:
                report.notice(where, f.note, plain_or_text(item))
        return out

    def zero(self) -> Any:
        return {}


def decode_value(kind: GoType, value: Any, existing: Any, path: str, report: Report) -> Any:
    """One value into `kind`: null clears a nullable type and leaves any other as it was."""
    if value is None:
        if kind.nullable:
            return None
        return existing if existing is not None else kind.zero()
    return kind.decode(value, existing, path, report)


def decode(kind: GoType, value: Any, path: str = "") -> tuple[Any, Report]:
    """A parsed tree decoded into `kind`: (plain value with canonical keys, report)."""
    report = Report()
    return decode_value(kind, value, None, path, report), report


def struct(*fields: Field, unknown: str = "unknown field", keep_unknown: bool = False) -> Struct:
    return Struct(tuple(fields), unknown, keep_unknown)


def embed(*groups: tuple[Field, ...]) -> tuple[Field, ...]:
    """Fields of embedded structs, promoted in declaration order as Go promotes them."""
    return tuple(f for group in groups for f in group)

