"""The ``--where`` expression language: filter runs by params, metrics, tags and columns.

::

    params.lr < 0.01 and metrics.val_acc > 0.9 or tags.baseline
    name ~ "resnet*" and status in ["finished", "crashed"]
    metrics.`train/loss` is not null and not (params.opt == "sgd")

:func:`compile_where` turns the text into a predicate over a row (the flat
dict :func:`gitexp.query.row_of` returns). The language, with its rules for
missing values, is documented in ``docs/query.md``; in short:

* names: ``params.<key>``, ``metrics.<key>``, ``tags.<name>``, the columns
  ``id experiment name status start duration exit_code`` (and ``tags``, ``sha``,
  ``ref``, ``fingerprint``, ``code_commit``); a bare name ``lr`` means
  ``metrics.lr`` or ``params.lr``. Backquotes quote odd keys: ``params.`opt/lr```.
* literals: numbers, 'strings' or "strings", ``true false null``, lists ``[1, 2]``.
* operators, loosest first: ``or``; ``and``; ``not``; comparisons
  ``== != < <= > >= in, not in, ~, !~, is null, is not null``. A comparison
  takes values, never conditions, so ``not a < b`` means ``not (a < b)``.
* two-valued logic: a comparison with a missing value, a NaN or values of
  different types is *false*; ``not`` turns it into *true*.

Pure Python with no third-party import: a hand-written tokenizer and a
recursive-descent parser that build closures; no ``eval``.
"""

from __future__ import annotations

import fnmatch
import math
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from gitexp.errors import UsageError

__all__ = [
    "BASE_NAMES",
    "QueryError",
    "QuerySyntaxError",
    "UnknownName",
    "compile_where",
    "filter_rows",
    "names_in",
]

# columns a bare name may refer to before it is tried as a metric or param
BASE_NAMES = (
    "id",
    "experiment",
    "name",
    "status",
    "start",
    "duration",
    "exit_code",
    "tags",
    "ref",
    "sha",
    "fingerprint",
    "code_commit",
)
MAX_DEPTH = 100
MAX_LENGTH = 100_000

Row = Mapping[str, Any]
Predicate = Callable[[Row], bool]
Getter = Callable[[Row], Any]


class QueryError(UsageError):
    """A ``--where`` expression that cannot be used; ``column`` is 1-based."""

    def __init__(self, message: str, column: int = 0, text: str = "") -> None:
        super().__init__(message)
        self.column = column
        self.text = text


class QuerySyntaxError(QueryError):
    """The expression does not parse."""


class UnknownName(QueryError):
    """A bare name that is no column, metric or param of the runs (or is both)."""


_MISSING = object()  # a value the row does not have


# ---------------------------------------------------------------- tokenizer


@dataclass(frozen=True)
class Token:
    kind: str  # name, number, string, regex, op, kw, eof
    value: Any
    pos: int  # 0-based index into the text
    text: str  # the source text of the token, for messages


KEYWORDS = {"and", "or", "not", "in", "is", "null", "true", "false"}
_OPS = ("==", "!=", "<=", ">=", "!~", "<", ">", "~", "(", ")", "[", "]", ",", "=")
_NUMBER = re.compile(r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?")
_NAME_START = re.compile(r"[^\W\d]", re.UNICODE)  # a letter or underscore
_NAME_CHAR = re.compile(r"[\w.\-/]", re.UNICODE)


class _Tokenizer:
    def __init__(self, text: str, label: str) -> None:
        self.text = text
        self.label = label
        self.tokens: list[Token] = []

    def error(self, message: str, pos: int) -> QuerySyntaxError:
        return QuerySyntaxError(f"{self.label}: {message} at column {pos + 1}", pos + 1, self.text)

    def run(self) -> list[Token]:
        text, i, n = self.text, 0, len(self.text)
        while i < n:
            c = text[i]
            if c.isspace():
                i += 1
                continue
            prev = self.tokens[-1] if self.tokens else None
            after_match = prev is not None and prev.kind == "op" and prev.value in ("~", "!~")
            if c == "/" and after_match:
                i = self._regex(i)
            elif c in "\"'":
                i = self._string(i)
            elif c == "`" or _NAME_START.match(c):
                i = self._name(i)
            elif (m := _NUMBER.match(text, i)) and (
                c not in "+-" or prev is None or prev.kind in ("op", "kw")
            ):
                i = self._number(m)
            else:
                for op in _OPS:
                    if text.startswith(op, i):
                        if op == "=":
                            raise self.error("'=' compares nothing: write '=='", i)
                        self.tokens.append(Token("op", op, i, op))
                        i += len(op)
                        break
                else:
                    raise self.error(f"unexpected character {c!r}", i)
        self.tokens.append(Token("eof", None, n, "end of input"))
        return self.tokens

    def _number(self, m: re.Match[str]) -> int:
        raw, end = m.group(0), m.end()
        if end < len(self.text) and _NAME_CHAR.match(self.text[end]) and self.text[end] != "/":
            raise self.error(f"malformed number {raw + self.text[end]!r}", m.start())
        if re.fullmatch(r"[-+]?\d+", raw):
            value: Any = int(raw)
        else:
            value = float(raw)
        self.tokens.append(Token("number", value, m.start(), raw))
        return end

    def _string(self, start: int) -> int:
        quote, text, i = self.text[start], self.text, start + 1
        out: list[str] = []
        while i < len(text):
            c = text[i]
            if c == quote:
                self.tokens.append(Token("string", "".join(out), start, text[start : i + 1]))
                return i + 1
            if c == "\\" and i + 1 < len(text):
                nxt = text[i + 1]
                out.append({"n": "\n", "t": "\t", "r": "\r", "0": "\0"}.get(nxt, nxt))
                i += 2
                continue
            out.append(c)
            i += 1
        raise self.error(f"unterminated string (missing closing {quote})", start)

    def _regex(self, start: int) -> int:
        text, i = self.text, start + 1
        out: list[str] = []
        while i < len(text):
            c = text[i]
            if c == "\\" and i + 1 < len(text) and text[i + 1] == "/":
                out.append("/")
                i += 2
                continue
            if c == "/":
                i += 1
                flags = 0
                while i < len(text) and text[i].isalpha():
                    if text[i] != "i":
                        raise self.error(f"unknown regex flag {text[i]!r} (only i)", i)
                    flags |= re.IGNORECASE
                    i += 1
                try:
                    pattern = re.compile("".join(out), flags)
                except re.error as exc:
                    raise self.error(f"bad regular expression: {exc}", start) from None
                self.tokens.append(Token("regex", pattern, start, text[start:i]))
                return i
            out.append(c)
            i += 1
        raise self.error("unterminated regular expression (missing closing /)", start)

    def _name(self, start: int) -> int:
        text, i, n = self.text, start, len(self.text)
        parts: list[str] = []
        quoted = False
        while i < n:
            c = text[i]
            if c == "`":
                quoted = True
                j = i + 1
                buf: list[str] = []
                while True:
                    if j >= n:
                        raise self.error("unterminated `name` (missing closing `)", i)
                    if text[j] == "`":
                        if j + 1 < n and text[j + 1] == "`":  # `` is a literal backquote
                            buf.append("`")
                            j += 2
                            continue
                        break
                    buf.append(text[j])
                    j += 1
                if not buf:
                    raise self.error("empty `` name", i)
                parts.append("".join(buf))
                i = j + 1
            elif _NAME_CHAR.match(c):
                parts.append(c)
                i += 1
            else:
                break
        word = "".join(parts)
        if not quoted and word.lower() in KEYWORDS:
            self.tokens.append(Token("kw", word.lower(), start, text[start:i]))
        else:
            self.tokens.append(Token("name", word, start, text[start:i]))
        return i


# ------------------------------------------------------------------ values


def _kind(v: Any) -> str:
    """The comparison class of a value: values of different classes never compare."""
    if isinstance(v, bool):
        return "bool"
    if isinstance(v, (int, float)):
        return "number"
    if isinstance(v, str):
        return "string"
    if isinstance(v, (list, tuple)):
        return "list"
    if v is None or v is _MISSING:
        return "missing"
    return "other"


def _absent(v: Any) -> bool:
    """Missing, null, or NaN: what no comparison is true of."""
    return v is _MISSING or v is None or (isinstance(v, float) and math.isnan(v))


def _equal(a: Any, b: Any) -> bool:
    if _absent(a) or _absent(b):
        return False
    ka, kb = _kind(a), _kind(b)
    if ka != kb:
        return False
    if ka == "list":
        return len(a) == len(b) and all(_equal(x, y) for x, y in zip(a, b))
    if ka == "other":
        return bool(a == b)
    return bool(a == b)


def _order(op: str, a: Any, b: Any) -> bool:
    if _absent(a) or _absent(b):
        return False
    ka = _kind(a)
    if ka != _kind(b) or ka not in ("number", "string", "bool"):
        return False
    if op == "<":
        return bool(a < b)
    if op == "<=":
        return bool(a <= b)
    if op == ">":
        return bool(a > b)
    return bool(a >= b)


def _contains(needle: Any, hay: Any) -> bool:
    if _absent(needle) or _absent(hay):
        return False
    if isinstance(hay, (list, tuple)):
        return any(_equal(needle, x) for x in hay)
    if isinstance(hay, str) and isinstance(needle, str):
        return needle in hay
    return False


def _truthy(v: Any) -> bool:
    """A value standing alone as a condition: present and not false, zero or empty."""
    if _absent(v):
        return False
    if isinstance(v, bool):
        return v
    if isinstance(v, (int, float)):
        return v != 0
    if isinstance(v, (str, list, tuple, dict)):
        return len(v) > 0
    return True


def _tag_value(tags: Any, key: str) -> Any:
    """``tags.key``: the value of a ``key=value`` tag, True for a plain ``key`` tag."""
    if not isinstance(tags, (list, tuple)):
        return _MISSING
    prefix = key + "="
    plain = False
    for t in tags:
        if not isinstance(t, str):
            continue
        if t.startswith(prefix):
            return t[len(prefix) :]
        if t == key:
            plain = True
    return True if plain else _MISSING


# ------------------------------------------------------------------- parser


@dataclass
class _Node:
    """A parsed sub-expression: a condition (``pred``) or a value (``get``)."""

    pos: int
    pred: Predicate | None = None
    get: Getter | None = None
    literal: bool = False  # a literal value (get returns a constant)
    is_null: bool = False  # the literal null

    def as_pred(self) -> Predicate:
        if self.pred is not None:
            return self.pred
        get = self.get
        assert get is not None
        return lambda row: _truthy(get(row))


class _Parser:
    def __init__(
        self, text: str, tokens: list[Token], columns: set[str] | None, label: str
    ) -> None:
        self.text = text
        self.tokens = tokens
        self.i = 0
        self.columns = columns
        self.label = label
        self.depth = 0

    # -- helpers
    @property
    def tok(self) -> Token:
        return self.tokens[self.i]

    def advance(self) -> Token:
        t = self.tokens[self.i]
        if t.kind != "eof":
            self.i += 1
        return t

    def at(self, kind: str, value: Any = None) -> bool:
        t = self.tok
        return t.kind == kind and (value is None or t.value == value)

    def error(self, message: str, tok: Token | None = None, cls: type = QuerySyntaxError) -> Any:
        tok = tok or self.tok
        return cls(f"{self.label}: {message} at column {tok.pos + 1}", tok.pos + 1, self.text)

    def describe(self, tok: Token) -> str:
        return "the end" if tok.kind == "eof" else repr(tok.text)

    def enter(self) -> None:
        self.depth += 1
        if self.depth > MAX_DEPTH:
            raise self.error(f"expression nested more than {MAX_DEPTH} deep")

    # -- grammar
    def parse(self) -> Predicate:
        if self.at("eof"):
            raise self.error("empty expression")
        node = self.or_expr()
        if not self.at("eof"):
            t = self.tok
            hint = ""
            if t.kind in ("name", "number", "string") or t.value in ("(", "["):
                hint = " (missing 'and' or 'or'?)"
            raise self.error(f"unexpected {self.describe(t)}{hint}")
        return node.as_pred()

    def or_expr(self) -> _Node:
        left = self.and_expr()
        if not self.at("kw", "or"):
            return left
        preds = [left.as_pred()]
        while self.at("kw", "or"):
            op = self.advance()
            if self.at("eof"):
                raise self.error(f"expected a condition after {op.text!r}")
            preds.append(self.and_expr().as_pred())
        return _Node(left.pos, pred=lambda row: any(p(row) for p in preds))

    def and_expr(self) -> _Node:
        left = self.not_expr()
        if not self.at("kw", "and"):
            return left
        preds = [left.as_pred()]
        while self.at("kw", "and"):
            op = self.advance()
            if self.at("eof"):
                raise self.error(f"expected a condition after {op.text!r}")
            preds.append(self.not_expr().as_pred())
        return _Node(left.pos, pred=lambda row: all(p(row) for p in preds))

    def not_expr(self) -> _Node:
        if self.at("kw", "not"):
            op = self.advance()
            if self.at("eof"):
                raise self.error(f"expected a condition after {op.text!r}")
            self.enter()
            inner = self.not_expr().as_pred()
            self.depth -= 1
            return _Node(op.pos, pred=lambda row: not inner(row))
        return self.comparison()

    def comparison(self) -> _Node:
        left = self.operand()
        t = self.tok
        if t.kind == "op" and t.value in ("==", "!=", "<", "<=", ">", ">="):
            self.advance()
            right = self.value_after(t)
            self.check_compare(left, t, right)
            node = self.binary(t.value, left, right)
        elif t.kind == "op" and t.value in ("~", "!~"):
            self.advance()
            node = self.match(t, left)
        elif self.at("kw", "in") or (
            self.at("kw", "not")
            and self.tokens[self.i + 1].kind == "kw"
            and self.tokens[self.i + 1].value == "in"
        ):
            negate = self.advance().value == "not"
            op = self.advance() if negate else t
            right = self.value_after(op)
            self.need_value(left, op)
            lg, rg = left.get, right.get
            assert lg is not None and rg is not None
            if negate:

                def pred(row: Row) -> bool:
                    a, b = lg(row), rg(row)
                    if _absent(a) or _absent(b) or _kind(b) not in ("list", "string"):
                        return False
                    if _kind(b) == "string" and _kind(a) != "string":
                        return False
                    return not _contains(a, b)

            else:

                def pred(row: Row) -> bool:
                    return _contains(lg(row), rg(row))

            node = _Node(left.pos, pred=pred)
        elif self.at("kw", "is"):
            op = self.advance()
            negate = False
            if self.at("kw", "not"):
                self.advance()
                negate = True
            if not self.at("kw", "null"):
                raise self.error(f"expected 'null' after {'is not' if negate else 'is'!r}")
            self.advance()
            self.need_value(left, op)
            g = left.get
            assert g is not None

            def is_null(row: Row) -> bool:
                v = g(row)
                return v is _MISSING or v is None

            node = _Node(left.pos, pred=(lambda row: not is_null(row)) if negate else is_null)
        else:
            return left
        nxt = self.tok
        if nxt.kind == "op" and nxt.value in ("==", "!=", "<", "<=", ">", ">=", "~", "!~"):
            raise self.error("comparisons do not chain: join them with 'and'", nxt)
        return node

    def need_value(self, node: _Node, op: Token) -> None:
        if node.get is None:
            raise self.error(f"the left side of {op.text!r} is a condition, not a value", op)

    def check_compare(self, left: _Node, op: Token, right: _Node) -> None:
        self.need_value(left, op)
        if left.is_null or right.is_null:
            word = "is null" if op.value == "==" else "is not null"
            if op.value in ("==", "!="):
                raise self.error(f"nothing equals null: write '{word}'", op)
            raise self.error("nothing is ordered against null", op)

    def binary(self, op: str, left: _Node, right: _Node) -> _Node:
        lg, rg = left.get, right.get
        assert lg is not None and rg is not None
        if op == "==":
            return _Node(left.pos, pred=lambda row: _equal(lg(row), rg(row)))
        if op == "!=":

            def ne(row: Row) -> bool:
                a, b = lg(row), rg(row)
                if _absent(a) or _absent(b) or _kind(a) != _kind(b):
                    return False
                return not _equal(a, b)

            return _Node(left.pos, pred=ne)
        return _Node(left.pos, pred=lambda row: _order(op, lg(row), rg(row)))

    def match(self, op: Token, left: _Node) -> _Node:
        self.need_value(left, op)
        t = self.tok
        if t.kind == "string":
            self.advance()
            glob = re.compile(fnmatch.translate(t.value), re.DOTALL)
            matcher = glob.match
        elif t.kind == "regex":
            self.advance()
            matcher = t.value.search
        else:
            what = "the end" if t.kind == "eof" else repr(t.text)
            raise self.error(
                f'expected a pattern ("glob*" or /regex/) after {op.text!r}, not {what}'
            )
        g = left.get
        assert g is not None
        negate = op.value == "!~"

        def pred(row: Row) -> bool:
            v = g(row)
            if not isinstance(v, str):
                return False
            return (matcher(v) is None) if negate else (matcher(v) is not None)

        return _Node(left.pos, pred=pred)

    def value_after(self, op: Token) -> _Node:
        t = self.tok
        if (
            t.kind == "eof"
            or (t.kind == "op" and t.value not in ("(", "["))
            or (t.kind == "kw" and t.value in ("and", "or", "in", "is"))
        ):
            raise self.error(f"expected a value after {op.text!r}")
        node = self.operand()
        if node.get is None:
            raise self.error(f"expected a value after {op.text!r}, not a condition", t)
        return node

    def operand(self) -> _Node:
        t = self.tok
        if t.kind == "op" and t.value == "(":
            self.advance()
            self.enter()
            if self.at("op", ")"):
                raise self.error("empty parentheses")
            inner = self.or_expr()
            if not self.at("op", ")"):
                raise self.error(
                    f"expected ')' to match the '(' opened at column {t.pos + 1}; "
                    f"found {self.describe(self.tok)}"
                )
            self.advance()
            self.depth -= 1
            inner.pos = t.pos
            return inner
        if t.kind == "op" and t.value == "[":
            return self.list_literal()
        if t.kind == "number":
            self.advance()
            return self.const(t.value, t.pos)
        if t.kind == "string":
            self.advance()
            return self.const(t.value, t.pos)
        if t.kind == "kw" and t.value in ("true", "false"):
            self.advance()
            return self.const(t.value == "true", t.pos)
        if t.kind == "kw" and t.value == "null":
            self.advance()
            node = self.const(None, t.pos)
            node.is_null = True
            return node
        if t.kind == "name":
            self.advance()
            return _Node(t.pos, get=self.resolve(t))
        if t.kind == "regex":
            raise self.error("a /regex/ goes after '~'")
        if t.kind == "eof":
            raise self.error("expected a condition")
        raise self.error(f"unexpected {self.describe(t)}")

    def const(self, value: Any, pos: int) -> _Node:
        return _Node(pos, get=lambda row: value, literal=True)

    def list_literal(self) -> _Node:
        open_tok = self.advance()
        self.enter()
        items: list[Any] = []
        while not self.at("op", "]"):
            t = self.tok
            if t.kind == "eof":
                raise self.error(
                    f"expected ']' to match the '[' opened at column {open_tok.pos + 1}; "
                    "found the end"
                )
            if t.kind == "op" and t.value == "[":
                node = self.list_literal()
            elif t.kind in ("number", "string") or (
                t.kind == "kw" and t.value in ("true", "false", "null")
            ):
                node = self.operand()
            else:
                raise self.error(f"a list holds literal values, not {self.describe(t)}")
            items.append(node.get(_EMPTY) if node.get else None)
            if self.at("op", ","):
                self.advance()
            elif not self.at("op", "]"):
                raise self.error(
                    f"expected ',' or ']' in the list, found {self.describe(self.tok)}"
                )
        self.advance()
        self.depth -= 1
        return self.const(items, open_tok.pos)

    def resolve(self, t: Token) -> Getter:
        """A name -> a function reading it from a row (``_MISSING`` when absent)."""
        name: str = t.value
        if name.startswith("tags.") and len(name) > 5:
            key = name[5:]
            return lambda row: _tag_value(row.get("tags"), key)
        if name.startswith(("params.", "metrics.")):
            return lambda row: row.get(name, _MISSING)
        if name in BASE_NAMES:
            return lambda row: row.get(name, _MISSING)
        metric, param = "metrics." + name, "params." + name
        cols = self.columns
        if cols:  # the runs are known: catch typos and ambiguity now
            has_m, has_p = metric in cols, param in cols
            if has_m and has_p:
                raise self.error(
                    f"{name!r} is both {metric} and {param}: write one of them",
                    t,
                    UnknownName,
                )
            if has_m:
                return lambda row: row.get(metric, _MISSING)
            if has_p:
                return lambda row: row.get(param, _MISSING)
            if name not in cols:
                raise self.error(
                    f"no column, metric or param named {name!r}" + _did_you_mean(name, cols),
                    t,
                    UnknownName,
                )
            return lambda row: row.get(name, _MISSING)

        def lookup(row: Row) -> Any:
            v = row.get(metric, _MISSING)
            if v is _MISSING:
                v = row.get(param, _MISSING)
            if v is _MISSING:
                v = row.get(name, _MISSING)
            return v

        return lookup


_EMPTY: Row = {}


def _did_you_mean(name: str, columns: Iterable[str]) -> str:
    import difflib

    short = {c.split(".", 1)[1] if c.startswith(("params.", "metrics.")) else c: c for c in columns}
    close = difflib.get_close_matches(name, list(short), n=1)
    return f" (did you mean {short[close[0]]}?)" if close else ""


# --------------------------------------------------------------------- api


def compile_where(
    text: str, columns: Iterable[str] | None = None, label: str = "--where"
) -> Predicate:
    """Compile a ``--where`` expression into ``predicate(row) -> bool``.

    Args:
        text: the expression.
        columns: the column names of the rows it will see (optional). When
            given and not empty, a bare name that matches no column, or both
            ``metrics.X`` and ``params.X``, is an error now rather than false later.
        label: how messages name the expression's origin.

    Raises:
        QuerySyntaxError: the text does not parse (message carries the column).
        UnknownName: a bare name is unknown or ambiguous among ``columns``.

    The predicate never raises: missing values, NaN and type mismatches make
    a comparison false.
    """
    if not isinstance(text, str):
        raise QuerySyntaxError(f"{label}: an expression is text, not {type(text).__name__}", 0)
    if len(text) > MAX_LENGTH:
        raise QuerySyntaxError(f"{label}: expression longer than {MAX_LENGTH} characters", 0)
    if "\n" in text or "\r" in text:
        text = text.replace("\r\n", " ").replace("\n", " ").replace("\r", " ")
    tokens = _Tokenizer(text, label).run()
    cols = set(columns) if columns is not None else None
    return _Parser(text, tokens, cols, label).parse()


def names_in(text: str, label: str = "--where") -> list[str]:
    """The names an expression reads (``metrics.acc``, ``lr``...), in order, once each.

    Raises:
        QuerySyntaxError: the text does not tokenize.
    """
    out: list[str] = []
    for tok in _Tokenizer(text, label).run():
        if tok.kind == "name" and tok.value not in out:
            out.append(tok.value)
    return out


def filter_rows(rows: Sequence[Row], text: str | None, label: str = "--where") -> list[Row]:
    """The rows an expression keeps (all of them when ``text`` is empty or None)."""
    if not text:
        return list(rows)
    columns = {k for r in rows for k in r}
    keep = compile_where(text, columns, label)
    return [r for r in rows if keep(r)]
