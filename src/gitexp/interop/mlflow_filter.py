"""MLflow ``search_runs`` filter strings and ``order_by`` keys, translated to the
``--where`` language (docs/query.md) and a leaderboard sort. Nothing here
evaluates a run: :mod:`gitexp.where` does, through the leaderboard.

::

    metrics.rmse < 1 and params.model = 'tree'   ->   `metrics.rmse` < 1 and ...
    tags.team = 'nlp'                            ->   `tags.team` == "nlp"
    attributes.status = 'FINISHED'               ->   status in ["finished", "pruned"]
    run_name LIKE 'bert-%'                       ->   name ~ /^bert\\-.*$/

MLflow keeps params as text, git-exp keeps their values: ``params.lr =
'0.01'`` matches a run whose ``lr`` is the text ``"0.01"`` or the number
0.01. ``LIKE`` and ``ILIKE`` match text only (a param stored as a number
does not match ``'0.0%'``). ``OR`` and parentheses are accepted too.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from gitexp.errors import UnsupportedCall
from gitexp.interop import mlflow_names as names
from gitexp.where import QueryError

# MLflow's entity prefixes (singular, plural and the short forms it accepts)
_METRIC = {"metric", "metrics"}
_PARAM = {"param", "params", "parameter", "parameters"}
_TAG = {"tag", "tags"}
_ATTRIBUTE = {"attribute", "attributes", "attr", "run"}
_DATASET = {"dataset", "datasets"}
# MLflow's run attributes and the git-exp column each one is
_ATTRIBUTES = {
    "run_id": "id",
    "run_name": "name",
    "status": "status",
    "start_time": "start",
    "experiment_id": "experiment",
}
_UNSUPPORTED_ATTRIBUTES = ("end_time", "artifact_uri", "user_id", "lifecycle_stage", "run_uuid")

_TOKEN = re.compile(
    r"""\s*(?:
      (?P<num>[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)(?![\w.])
    | (?P<str>'(?:[^'\\]|\\.|'')*'|"(?:[^"\\]|\\.)*")
    | (?P<bq>`(?:[^`]|``)*`)
    | (?P<op><=|>=|!=|<>|==|=|<|>|\(|\)|,|\.)
    | (?P<word>[A-Za-z_][\w\-]*)
    )""",
    re.VERBOSE,
)


class FilterError(QueryError):
    """An MLflow filter string that does not parse."""


def _fail(text: str, message: str, pos: int) -> FilterError:
    return FilterError(f"filter_string: {message} at column {pos + 1}", pos + 1, text)


@dataclass
class _Tok:
    kind: str
    value: str
    pos: int


def _tokens(text: str) -> list[_Tok]:
    out: list[_Tok] = []
    i = 0
    while i < len(text):
        if text[i:].strip() == "":
            break
        m = _TOKEN.match(text, i)
        if m is None or m.end() == i:
            j = i + len(text[i:]) - len(text[i:].lstrip())
            raise _fail(text, f"unexpected {text[j]!r}", j)
        kind = m.lastgroup or ""
        start = m.start(kind)
        out.append(_Tok(kind, m.group(kind), start))
        i = m.end()
    out.append(_Tok("eof", "", len(text)))
    return out


def _unquote(tok: _Tok) -> str:
    body = tok.value[1:-1]
    if tok.kind == "bq":
        return body.replace("``", "`")
    if tok.value[0] == "'":
        body = body.replace("''", "'")
    return re.sub(r"\\(.)", r"\1", body)


def name_literal(name: str) -> str:
    """A name of the ``--where`` language, backquoted whole."""
    return "`" + name.replace("`", "``") + "`"


def text_literal(text: str) -> str:
    """Text as a ``--where`` string literal."""
    escaped = text.replace("\\", "\\\\").replace('"', '\\"')
    return '"' + escaped.replace("\n", "\\n").replace("\t", "\\t") + '"'


def value_literal(value: Any) -> str:
    """A number, text, boolean or null as a ``--where`` literal."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    return text_literal(str(value))


def _like_regex(pattern: str, ignore_case: bool) -> str:
    """SQL LIKE (``%`` any text, ``_`` one character) as a ``--where`` regex literal."""
    parts = []
    for c in pattern:
        parts.append(".*" if c == "%" else "." if c == "_" else re.escape(c))
    body = "^(?s:" + "".join(parts) + ")$"
    return "/" + body.replace("/", "\\/") + "/" + ("i" if ignore_case else "")


class _Translator:
    def __init__(self, text: str) -> None:
        self.text = text
        self.toks = _tokens(text)
        self.i = 0

    @property
    def tok(self) -> _Tok:
        return self.toks[self.i]

    def advance(self) -> _Tok:
        t = self.toks[self.i]
        self.i += 1
        return t

    def word(self, *words: str) -> bool:
        return self.tok.kind == "word" and self.tok.value.lower() in words

    def translate(self) -> str:
        out = self.disjunction()
        if self.tok.kind != "eof":
            raise _fail(self.text, f"unexpected {self.tok.value!r}", self.tok.pos)
        return out

    def disjunction(self) -> str:
        parts = [self.conjunction()]
        while self.word("or"):
            self.advance()
            parts.append(self.conjunction())
        return parts[0] if len(parts) == 1 else "(" + " or ".join(parts) + ")"

    def conjunction(self) -> str:
        parts = [self.primary()]
        while self.word("and"):
            self.advance()
            parts.append(self.primary())
        return parts[0] if len(parts) == 1 else "(" + " and ".join(parts) + ")"

    def primary(self) -> str:
        if self.tok.kind == "op" and self.tok.value == "(":
            self.advance()
            inner = self.disjunction()
            if not (self.tok.kind == "op" and self.tok.value == ")"):
                raise _fail(self.text, "expected ')'", self.tok.pos)
            self.advance()
            return inner
        return self.comparison()

    # ------------------------------------------------------------ names
    def identifier(self) -> tuple[str, str, int]:
        """(entity, key, position): ``metrics.`a b```, ``params."x"``, ``run_name``."""
        first = self.advance()
        pos = first.pos
        if first.kind == "bq":
            whole = _unquote(first)
            entity, _, key = whole.partition(".")
            return entity.lower(), key, pos
        if first.kind != "word":
            raise _fail(self.text, f"expected a name, found {first.value!r}", pos)
        entity = first.value
        if not (self.tok.kind == "op" and self.tok.value == "."):
            return "attribute", entity, pos
        self.advance()
        parts = []
        while True:
            t = self.advance()
            if t.kind in ("bq", "str"):
                parts.append(_unquote(t))
            elif t.kind in ("word", "num"):
                parts.append(t.value)
            else:
                raise _fail(self.text, f"expected a key after {entity!r}.", t.pos)
            if self.tok.kind == "op" and self.tok.value == ".":
                self.advance()
                continue
            break
        return entity.lower(), ".".join(parts), pos

    # -------------------------------------------------------- comparisons
    def comparison(self) -> str:
        entity, key, pos = self.identifier()
        op_tok = self.tok
        if op_tok.kind == "op" and op_tok.value in ("=", "==", "!=", "<>", "<", "<=", ">", ">="):
            self.advance()
            op = {"=": "==", "<>": "!="}.get(op_tok.value, op_tok.value)
            value = self.value()
            return self.compare(entity, key, op, value, pos)
        if self.word("like", "ilike"):
            ignore = self.advance().value.lower() == "ilike"
            value = self.value()
            if not isinstance(value, str):
                raise _fail(self.text, "LIKE takes a quoted pattern", op_tok.pos)
            return self.like(entity, key, value, ignore, pos)
        if self.word("not") and self.toks[self.i + 1].value.lower() in ("in", "like", "ilike"):
            self.advance()
            if self.word("in"):
                self.advance()
                return self.membership(entity, key, self.values(), True, pos)
            ignore = self.advance().value.lower() == "ilike"
            value = self.value()
            if not isinstance(value, str):
                raise _fail(self.text, "LIKE takes a quoted pattern", op_tok.pos)
            return f"not {self.like(entity, key, value, ignore, pos)}"
        if self.word("in"):
            self.advance()
            return self.membership(entity, key, self.values(), False, pos)
        if self.word("is"):
            self.advance()
            negate = False
            if self.word("not"):
                self.advance()
                negate = True
            if not self.word("null"):
                raise _fail(self.text, "expected NULL after IS", self.tok.pos)
            self.advance()
            return f"{self.column(entity, key, pos)} is {'not ' if negate else ''}null"
        raise _fail(self.text, f"expected a comparison after {key!r}", op_tok.pos)

    def value(self) -> Any:
        t = self.advance()
        if t.kind == "num":
            return float(t.value) if any(c in t.value for c in ".eE") else int(t.value)
        if t.kind == "str":
            return _unquote(t)
        raise _fail(self.text, f"expected a number or a quoted value, found {t.value!r}", t.pos)

    def values(self) -> list[Any]:
        if not (self.tok.kind == "op" and self.tok.value == "("):
            raise _fail(self.text, "IN takes a list: ('a', 'b')", self.tok.pos)
        self.advance()
        out = [self.value()]
        while self.tok.kind == "op" and self.tok.value == ",":
            self.advance()
            out.append(self.value())
        if not (self.tok.kind == "op" and self.tok.value == ")"):
            raise _fail(self.text, "expected ')' after the list", self.tok.pos)
        self.advance()
        return out

    def column(self, entity: str, key: str, pos: int) -> str:
        """The ``--where`` name of an MLflow name."""
        if entity in _METRIC:
            return name_literal(f"metrics.{key}")
        if entity in _PARAM:
            return name_literal(f"params.{key}")
        if entity in _TAG:
            if key == names.RUN_NAME_TAG:
                return "name"
            if key.startswith(names.SYSTEM_PREFIX):
                raise UnsupportedCall(
                    f"search_runs filter on tags.{key}",
                    "MLflow's system tags other than mlflow.runName are not git-exp tags",
                )
            return name_literal(f"tags.{key}")
        if entity in _ATTRIBUTE:
            if key in _ATTRIBUTES:
                return _ATTRIBUTES[key]
            if key in _UNSUPPORTED_ATTRIBUTES:
                raise UnsupportedCall(f"search_runs filter on attributes.{key}")
            raise _fail(self.text, f"unknown attribute {key!r}", pos)
        if entity in _DATASET:
            raise UnsupportedCall(f"search_runs filter on datasets.{key}")
        raise _fail(self.text, f"unknown name {entity}.{key}", pos)

    def compare(self, entity: str, key: str, op: str, value: Any, pos: int) -> str:
        col = self.column(entity, key, pos)
        if col == "status":
            return self.membership(entity, key, [value], op == "!=", pos)
        if col == "start":
            if isinstance(value, str) or isinstance(value, bool):
                raise _fail(self.text, "start_time compares with milliseconds", pos)
            return f"start {op} {text_literal(names.iso_of_millis(value))}"
        if col == "experiment":
            value = names.experiment_of(str(value))
        if entity in _PARAM and isinstance(value, str) and op in ("==", "!="):
            typed = names.param_value(value)
            alternatives = [value] if isinstance(typed, str) else [value, typed]
            same = " or ".join(f"{col} == {value_literal(v)}" for v in alternatives)
            if op == "==":
                return f"({same})"
            return f"({col} is not null and not ({same}))"
        if op == "!=":  # present and different: never true for a run without it
            return f"({col} is not null and not ({col} == {value_literal(value)}))"
        return f"{col} {op} {value_literal(value)}"

    def membership(
        self, entity: str, key: str, values: Sequence[Any], negate: bool, pos: int
    ) -> str:
        col = self.column(entity, key, pos)
        items: list[Any] = []
        for v in values:
            if col == "status":
                items += names.STATUS_MEANS.get(str(v).upper(), (str(v).lower(),))
            elif col == "experiment":
                items.append(names.experiment_of(str(v)))
            else:
                items.append(v)
                if entity in _PARAM and isinstance(v, str):
                    typed = names.param_value(v)
                    if not isinstance(typed, str):
                        items.append(typed)
        listed = "[" + ", ".join(value_literal(v) for v in items) + "]"
        if negate:
            return f"({col} is not null and not ({col} in {listed}))"
        return f"{col} in {listed}"

    def like(self, entity: str, key: str, pattern: str, ignore_case: bool, pos: int) -> str:
        col = self.column(entity, key, pos)
        if col in ("status", "start"):
            raise UnsupportedCall(f"search_runs filter: LIKE on attributes.{key}")
        return f"{col} ~ {_like_regex(pattern, ignore_case)}"


def to_where(filter_string: str | None) -> str | None:
    """An MLflow filter string as a ``--where`` expression (None for no filter).

    Raises:
        FilterError: the filter does not parse.
        UnsupportedCall: it names something git-exp does not keep (``end_time``,
            ``datasets.*``, system tags other than ``mlflow.runName``).
    """
    if filter_string is None or not filter_string.strip():
        return None
    return _Translator(filter_string).translate()


def to_sort(order_by: Sequence[str] | None) -> str | None:
    """MLflow ``order_by`` (``["metrics.rmse DESC"]``) as a leaderboard sort
    (``-metrics.rmse``); None for MLflow's default (newest first)."""
    if not order_by:
        return None
    if len(order_by) > 1:
        raise UnsupportedCall(
            "search_runs(order_by=[...]) with more than one key", "git-exp sorts by one column"
        )
    text = order_by[0].strip()
    desc = False
    m = re.match(r"^(.*?)\s+(asc|desc)$", text, re.IGNORECASE)
    if m:
        text, desc = m.group(1).strip(), m.group(2).lower() == "desc"
    translator = _Translator(text)
    entity, key, pos = translator.identifier()
    if translator.tok.kind != "eof":
        raise _fail(text, f"unexpected {translator.tok.value!r} in order_by", translator.tok.pos)
    col = translator.column(entity, key, pos).strip("`").replace("``", "`")
    return ("-" if desc else "") + col
