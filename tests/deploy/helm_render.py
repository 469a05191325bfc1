"""Render a Helm chart without Helm: the subset of Go templates that deploy/helm/sriovkit uses.

No Helm binary can be installed from the registries this project may use (PyPI, Debian, npm),
so CI renders the chart with this module instead of ``helm template``. It is strict: a template
construct it does not know is an error naming the template and line, never silently wrong output.
With a real Helm, ``helm template sriovkit deploy/helm/sriovkit -n kube-system`` renders the same
objects (tests/deploy/test_helm_render.py pins down the semantics this module shares with Helm).

Supported:
- actions ``{{ pipeline }}`` and ``{{ $var := pipeline }}``, whitespace trimming ``{{- ... -}}``,
  comments ``{{/* ... */}}``;
- ``if`` / ``else if`` / ``else`` / ``end``, ``with`` / ``else`` / ``end``, ``range`` over a list or
  a map (``range $v := X``, ``range $k, $v := X``; maps iterate in sorted key order, as in Go);
- terms: ``.``, ``.A.B``, ``$``, ``$.A.B``, ``$var``, ``$var.A``, string literals, integers,
  ``true``/``false``/``nil``, parenthesised pipelines;
- functions: ``default``, ``quote``, ``toYaml``, ``toJson``, ``toPrettyJson``, ``indent``,
  ``nindent``, ``not``, ``eq``, ``ne``, ``and``, ``or``, ``empty``, ``required``, ``dict``;
- the chart objects ``.Values`` (values.yaml, then ``-f`` files, then ``--set`` overrides; checked
  against the chart's values.schema.json as Helm checks them),
  ``.Release.Name``, ``.Release.Namespace``, ``.Release.Service``, ``.Chart.Name``,
  ``.Chart.Version``, ``.Chart.AppVersion``.

Differences from Helm worth knowing: numbers from values keep their YAML type (Helm turns them into
float64, so 1000000 would render as 1e+06 there: keep big numbers quoted in values), and ``quote``
escapes like JSON (Go's strconv.Quote agrees for printable text).

Usage: python tests/deploy/helm_render.py CHART_DIR [-n NAMESPACE] [-f VALUES] [--set a.b=c]
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jsonschema
import yaml

_ACTION = re.compile(r"\{\{(-[ \t\r\n])?(.*?)([ \t\r\n]-)?\}\}", re.S)
_DECLARE = re.compile(r"^(\$\w+)\s*:=\s*(.+)$", re.S)
_RANGE_VARS = re.compile(r"^(\$\w+)\s*(?:,\s*(\$\w+)\s*)?:=\s*(.+)$", re.S)
_TERM = re.compile(r'"(?:[^"\\]|\\.)*"|`[^`]*`|\(|\)|\||[^\s()|]+')
_UNSUPPORTED = ("define", "template", "block", "include", "tpl", "lookup", "break", "continue")


class TemplateError(ValueError):
    """A template this renderer cannot render: the message names the template and line."""


# -- parsing ------------------------------------------------------------------------------------

@dataclass
class Text:
    text: str


@dataclass
class Output:
    pipeline: str
    where: str


@dataclass
class Declare:
    variable: str
    pipeline: str
    where: str


@dataclass
class Branch:
    kind: str  # "if" | "with" | "range"
    pipeline: str
    where: str
    body: list[Any] = field(default_factory=list)
    otherwise: list[Any] = field(default_factory=list)
    key_var: str | None = None
    value_var: str | None = None


def _tokens(text: str, name: str) -> Iterator[tuple[str, str, str]]:
    """("text", s, where) and ("action", body, where) items, with {{- -}} trimming applied."""
    items: list[list[str]] = []
    pos = 0
    for m in _ACTION.finditer(text):
        items.append(["text", text[pos:m.start()], ""])
        line = text.count("\n", 0, m.start()) + 1
        items.append(["action", m.group(2).strip(), f"{name}:{line}", m.group(1) or "", m.group(3) or ""])
        pos = m.end()
    items.append(["text", text[pos:], ""])
    for i, item in enumerate(items):
        if item[0] != "action":
            continue
        if item[3]:
            items[i - 1][1] = items[i - 1][1].rstrip(" \t\r\n")
        if item[4]:
            items[i + 1][1] = items[i + 1][1].lstrip(" \t\r\n")
    for item in items:
        yield item[0], item[1], item[2]


def parse(text: str, name: str) -> list[Any]:
    nodes, stop = _parse_until(iter(list(_tokens(text, name))), name, ())
    if stop is not None:
        raise TemplateError(f"{stop[1]}: unexpected {{{{ {stop[0]} }}}}")
    return nodes


def _parse_until(tokens: Iterator[tuple[str, str, str]], name: str,
                 stops: tuple[str, ...]) -> tuple[list[Any], tuple[str, str] | None]:
    nodes: list[Any] = []
    for kind, body, where in tokens:
        if kind == "text":
            if body:
                nodes.append(Text(body))
            continue
        if body.startswith("/*"):
            continue
        word = body.split(None, 1)[0] if body else ""
        if word in ("end", "else"):
            if word not in stops:
                raise TemplateError(f"{where}: unexpected {{{{ {body} }}}}")
            return nodes, (body, where)
        if word in ("if", "with", "range"):
            nodes.append(_parse_branch(word, body[len(word):].strip(), where, tokens, name))
        elif _DECLARE.match(body):
            m = _DECLARE.match(body)
            assert m is not None
            nodes.append(Declare(m.group(1), m.group(2).strip(), where))
        elif word in _UNSUPPORTED or (body.startswith("$") and "=" in body):
            raise TemplateError(f"{where}: unsupported template construct {{{{ {body} }}}}")
        else:
            nodes.append(Output(body, where))
    if stops:
        raise TemplateError(f"{name}: missing {{{{ end }}}}")
    return nodes, None


def _parse_branch(kind: str, rest: str, where: str, tokens: Iterator[tuple[str, str, str]], name: str) -> Branch:
    branch = Branch(kind, rest, where)
    if kind == "range":
        m = _RANGE_VARS.match(rest)
        if m:
            first, second, branch.pipeline = m.group(1), m.group(2), m.group(3).strip()
            branch.key_var, branch.value_var = (first, second) if second else (None, first)
    elif ":=" in rest:
        raise TemplateError(f"{where}: unsupported variable declaration in {kind}")
    branch.body, stop = _parse_until(tokens, name, ("end", "else"))
    if stop is not None and stop[0].startswith("else if") and kind != "if":
        raise TemplateError(f"{stop[1]}: {{{{ else if }}}} inside {kind}")
    return _finish_else_chain(branch, stop, tokens, name)


def _finish_else_chain(branch: Branch, stop: tuple[str, str] | None, tokens: Iterator[tuple[str, str, str]],
                       name: str) -> Branch:
    assert stop is not None
    if stop[0] == "else":
        branch.otherwise, _ = _parse_until(tokens, name, ("end",))
    elif stop[0].startswith("else if "):
        nested = Branch("if", stop[0][len("else if "):].strip(), stop[1])
        nested.body, stop = _parse_until(tokens, name, ("end", "else"))
        branch.otherwise = [_finish_else_chain(nested, stop, tokens, name)]
    elif stop[0] != "end":
        raise TemplateError(f"{stop[1]}: unsupported {{{{ {stop[0]} }}}}")
    return branch


# -- evaluation ---------------------------------------------------------------------------------

def truthy(value: Any) -> bool:
    """Go template truth: false, 0, nil and empty strings, lists and maps are false."""
    return not (value is None or value is False or (value == 0 and not isinstance(value, bool)) or
                (isinstance(value, (str, list, dict, tuple)) and len(value) == 0))


def _to_yaml(value: Any) -> str:
    if value is None:
        return "null"
    return yaml.safe_dump(value, default_flow_style=False, sort_keys=True, width=1 << 30).rstrip("\n").removesuffix(
        "\n...")


def _indent(width: int, text: Any) -> str:
    pad = " " * int(width)
    return "\n".join(pad + line for line in _text(text).split("\n"))


def _required(message: str, value: Any) -> Any:
    if not truthy(value):
        raise TemplateError(message)
    return value


def _and(*args: Any) -> Any:
    for a in args:
        if not truthy(a):
            return a
    return args[-1]


def _or(*args: Any) -> Any:
    for a in args:
        if truthy(a):
            return a
    return args[-1]


FUNCTIONS: dict[str, Callable[..., Any]] = {
    "default": lambda fallback, value=None: value if truthy(value) else fallback,
    "quote": lambda *values: " ".join(json.dumps(_text(v)) for v in values),
    "toYaml": _to_yaml,
    "toJson": lambda value: json.dumps(value, sort_keys=True, separators=(",", ":")),
    "toPrettyJson": lambda value: json.dumps(value, sort_keys=True, indent=2),
    "indent": _indent,
    "nindent": lambda width, text: "\n" + _indent(width, text),
    "not": lambda value: not truthy(value),
    "eq": lambda a, *others: any(a == o for o in others),
    "ne": lambda a, b: a != b,
    "and": _and,
    "or": _or,
    "empty": lambda value: not truthy(value),
    "required": _required,
    "dict": lambda *kv: {str(kv[i]): kv[i + 1] for i in range(0, len(kv) - 1, 2)},
}


def _text(value: Any) -> str:
    """How Go's text/template prints a value; Helm prints a missing value as ''."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (dict, list)):
        raise TemplateError(f"printing a {type(value).__name__} needs toYaml or toJson: {value!r:.60}")
    return str(value)


class _Scope:
    def __init__(self, dot: Any, variables: dict[str, Any]) -> None:
        self.dot = dot
        self.variables = variables

    def child(self, dot: Any, **new: Any) -> _Scope:
        return _Scope(dot, {**self.variables, **new})


def evaluate(pipeline: str, scope: _Scope, where: str) -> Any:
    terms = _TERM.findall(pipeline)
    value, rest = _eval_pipeline(terms, scope, where)
    if rest:
        raise TemplateError(f"{where}: unexpected {' '.join(rest)!r} in {{{{ {pipeline} }}}}")
    return value


def _eval_pipeline(terms: list[str], scope: _Scope, where: str) -> tuple[Any, list[str]]:
    """Evaluate `a b c | f x | g` up to a closing ')' or the end; return (value, unconsumed terms)."""
    value: Any = _NOTHING
    while terms:
        command: list[Any] = []
        while terms and terms[0] not in ("|", ")"):
            term = terms.pop(0)
            if term == "(":
                inner, terms = _eval_pipeline(terms, scope, where)
                if not terms or terms[0] != ")":
                    raise TemplateError(f"{where}: unbalanced parentheses")
                terms.pop(0)
                command.append(_Literal(inner))
            else:
                command.append(term)
        value = _run_command(command, value, scope, where)
        if terms and terms[0] == "|":
            terms.pop(0)
            continue
        break
    return value, terms


class _Literal:
    def __init__(self, value: Any) -> None:
        self.value = value


_NOTHING = object()


def _run_command(command: list[Any], piped: Any, scope: _Scope, where: str) -> Any:
    if not command:
        raise TemplateError(f"{where}: empty command in pipeline")
    head = command[0]
    if isinstance(head, str) and re.fullmatch(r"[A-Za-z_]\w*", head) and head not in ("true", "false", "nil"):
        if head not in FUNCTIONS:
            raise TemplateError(f"{where}: unsupported function {head!r}")
        args = [_term(t, scope, where) for t in command[1:]]
        if piped is not _NOTHING:
            args.append(piped)
        try:
            return FUNCTIONS[head](*args)
        except TypeError as exc:
            raise TemplateError(f"{where}: wrong arguments to {head}: {exc}") from None
    if len(command) != 1 or piped is not _NOTHING:
        raise TemplateError(f"{where}: {command!r} is not a function call")
    return _term(head, scope, where)


def _term(term: Any, scope: _Scope, where: str) -> Any:
    if isinstance(term, _Literal):
        return term.value
    if term.startswith('"'):
        return json.loads(term)
    if term.startswith("`"):
        return term[1:-1]
    if re.fullmatch(r"-?\d+", term):
        return int(term)
    if term in ("true", "false"):
        return term == "true"
    if term == "nil":
        return None
    if term.startswith("$"):
        name, _, path = term.partition(".")
        if name not in scope.variables:
            raise TemplateError(f"{where}: undefined variable {name}")
        return _lookup(scope.variables[name], path, term, where)
    if term.startswith("."):
        return _lookup(scope.dot, term[1:], term, where)
    raise TemplateError(f"{where}: cannot evaluate {term!r}")


def _lookup(value: Any, path: str, term: str, where: str) -> Any:
    for part in [p for p in path.split(".") if p]:
        if value is None:
            raise TemplateError(f"{where}: nil pointer evaluating {term} (at .{part})")
        if not isinstance(value, dict):
            raise TemplateError(f"{where}: {term}: cannot take .{part} of a {type(value).__name__}")
        value = value.get(part)
    return value


def execute(nodes: list[Any], scope: _Scope) -> str:
    out: list[str] = []
    for node in nodes:
        if isinstance(node, Text):
            out.append(node.text)
        elif isinstance(node, Output):
            out.append(_text(evaluate(node.pipeline, scope, node.where)))
        elif isinstance(node, Declare):
            # visible to the rest of the enclosing block, as in Go
            scope.variables[node.variable] = evaluate(node.pipeline, scope, node.where)
        else:
            out.append(_execute_branch(node, scope))
    return "".join(out)


def _execute_branch(node: Branch, scope: _Scope) -> str:
    value = evaluate(node.pipeline, scope, node.where)
    if node.kind == "if":
        return execute(node.body if truthy(value) else node.otherwise, scope)
    if node.kind == "with":
        return execute(node.body, scope.child(value)) if truthy(value) else execute(node.otherwise, scope)
    if not truthy(value):
        return execute(node.otherwise, scope)
    if isinstance(value, dict):
        pairs: list[tuple[Any, Any]] = [(k, value[k]) for k in sorted(value)]
    elif isinstance(value, list):
        pairs = list(enumerate(value))
    else:
        raise TemplateError(f"{node.where}: range over a {type(value).__name__}")
    parts = []
    for key, item in pairs:
        new: dict[str, Any] = {}
        if node.value_var:
            new[node.value_var] = item
        if node.key_var:
            new[node.key_var] = key
        parts.append(execute(node.body, scope.child(item, **new)))
    return "".join(parts)


def render_string(text: str, context: dict[str, Any], name: str = "<template>") -> str:
    """Render one template against `context` (what `.` is at the top: Values, Release, Chart)."""
    return execute(parse(text, name), _Scope(context, {"$": context}))


# -- charts -------------------------------------------------------------------------------------

def deep_merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    """Helm's values coalescing: maps merge key by key; anything else replaces."""
    merged = dict(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def set_value(values: dict[str, Any], assignment: str) -> dict[str, Any]:
    """Apply one `--set a.b.c=value` (3 is an int, true a bool, anything else a string)."""
    path, sep, raw = assignment.partition("=")
    if not sep or not path:
        raise TemplateError(f"--set {assignment}: expected key=value")
    override: dict[str, Any] = {}
    node = override
    keys = path.split(".")
    for key in keys[:-1]:
        node = node.setdefault(key, {})
    node[keys[-1]] = _set_scalar(raw)
    return deep_merge(values, override)


def _set_scalar(raw: str) -> Any:
    """As Helm's --set types a value: integers, true/false and null; anything else (9.9, [a]) a string."""
    if re.fullmatch(r"-?\d+", raw):
        return int(raw)
    return {"true": True, "false": False, "null": None}.get(raw, raw)


def chart_context(chart_dir: Path, *, release: str = "sriovkit", namespace: str = "kube-system",
                  values_files: tuple[Path, ...] = (), sets: tuple[str, ...] = ()) -> dict[str, Any]:
    meta = yaml.safe_load((chart_dir / "Chart.yaml").read_text())
    values = yaml.safe_load((chart_dir / "values.yaml").read_text()) or {}
    for path in values_files:
        values = deep_merge(values, yaml.safe_load(path.read_text()) or {})
    for assignment in sets:
        values = set_value(values, assignment)
    _check_values(chart_dir, values)
    chart = {"Name": meta["name"], "Version": meta["version"], "AppVersion": meta.get("appVersion", "")}
    return {"Values": values, "Release": {"Name": release, "Namespace": namespace, "Service": "Helm"},
            "Chart": chart}


def _check_values(chart_dir: Path, values: dict[str, Any]) -> None:
    schema_file = chart_dir / "values.schema.json"
    if not schema_file.exists():
        return
    validator = jsonschema.Draft202012Validator(json.loads(schema_file.read_text()))
    problems = [f"values: {'.'.join(map(str, e.absolute_path)) or '(top)'}: {e.message}"
                for e in sorted(validator.iter_errors(values), key=lambda e: list(map(str, e.absolute_path)))]
    if problems:
        raise TemplateError("\n".join(problems))


def render_chart(chart_dir: Path, **kwargs: Any) -> list[tuple[str, dict[str, Any]]]:
    """Every object the chart renders, as (template name, object), in template file order."""
    context = chart_context(chart_dir, **kwargs)
    objects: list[tuple[str, dict[str, Any]]] = []
    for path in sorted((chart_dir / "templates").glob("*.yaml")):
        if path.name.startswith("_"):
            continue
        name = f"{chart_dir.name}/templates/{path.name}"
        text = render_string(path.read_text(), context, name)
        try:
            docs = list(yaml.safe_load_all(text))
        except yaml.YAMLError as exc:
            raise TemplateError(f"{name}: renders invalid YAML: {exc}") from None
        objects.extend((name, doc) for doc in docs if doc is not None)
    return objects


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("chart", type=Path)
    parser.add_argument("-n", "--namespace", default="kube-system")
    parser.add_argument("--release", default="sriovkit")
    parser.add_argument("-f", "--values", action="append", default=[], type=Path)
    parser.add_argument("--set", action="append", default=[], dest="sets")
    args = parser.parse_args(argv)
    try:
        objects = render_chart(args.chart, release=args.release, namespace=args.namespace,
                               values_files=tuple(args.values), sets=tuple(args.sets))
    except TemplateError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    for name, obj in objects:
        print(f"---\n# Source: {name}")
        print(yaml.safe_dump(obj, sort_keys=False).rstrip("\n"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
