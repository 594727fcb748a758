"""The --where language: what users write, what it keeps, and how it fails."""

from __future__ import annotations

import math

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gitexp.errors import UsageError
from gitexp.where import QueryError, QuerySyntaxError, UnknownName, compile_where, filter_rows

NAN = float("nan")

RUN_A = {
    "id": "20261122-143022-7f3a9c",
    "experiment": "mnist",
    "name": "resnet50-long",
    "status": "finished",
    "start": "2026-11-22T14:30:22.000001Z",
    "duration": 61.5,
    "exit_code": 0,
    "tags": ["baseline", "owner=ana", "stage=prod"],
    "params.lr": 0.001,
    "params.opt": "adam",
    "params.layers": [64, 64],
    "params.use_bn": True,
    "params.opt/lr": 0.5,
    "params.model.depth": 50,
    "metrics.val_acc": 0.95,
    "metrics.loss": 0.2,
    "metrics.train/loss": 0.1,
}
RUN_B = {
    "id": "20261122-150000-aaaaaa",
    "experiment": "mnist/sweep",
    "name": "vgg",
    "status": "crashed",
    "start": "2026-11-20T09:00:00Z",
    "duration": None,
    "exit_code": None,
    "tags": ["owner=bob"],
    "params.lr": 0.1,
    "params.opt": "sgd",
    "metrics.val_acc": 0.5,
    "metrics.loss": NAN,
}
RUN_C = {  # nothing but identity: every param and metric is missing
    "id": "20261121-000000-cccccc",
    "experiment": "other",
    "name": None,
    "status": "running",
    "start": "2026-11-21T00:00:00Z",
    "tags": [],
}
ROWS = [RUN_A, RUN_B, RUN_C]


def keep(expr: str, rows=ROWS) -> list[str]:
    pred = compile_where(expr)
    return [r["id"][-6:] for r in rows if pred(r)]


A, B, C = "7f3a9c", "aaaaaa", "cccccc"


@pytest.mark.parametrize(
    ("expr", "expected"),
    [
        # the example: and binds tighter than or
        ("params.lr < 0.01 and metrics.val_acc > 0.9 or tags.baseline", [A]),
        ("params.lr > 0.01 or metrics.val_acc > 0.9 and tags.baseline", [A, B]),
        ("(params.lr > 0.01 or metrics.val_acc > 0.9) and tags.baseline", [A]),
        # comparisons
        ("params.lr == 0.001", [A]),
        ("params.lr != 0.001", [B]),
        ("params.lr <= 0.1", [A, B]),
        ("params.lr >= 0.1", [B]),
        ("params.lr < 1e-2", [A]),
        ("params.lr > -1", [A, B]),
        ("metrics.val_acc>0.9", [A]),
        ("0.9 < metrics.val_acc", [A]),
        ("params.model.depth == 50", [A]),
        ("params.use_bn == true", [A]),
        ("params.use_bn", [A]),
        ("params.layers == [64, 64]", [A]),
        ("params.layers == [64]", []),
        ("64 in params.layers", [A]),
        # base columns and strings
        ('status == "finished"', [A]),
        ("status == 'crashed'", [B]),
        ('status in ["finished", "crashed"]', [A, B]),
        ('status not in ["finished", "crashed"]', [C]),
        ('experiment ~ "mnist*"', [A, B]),
        ('experiment == "mnist"', [A]),
        ('start > "2026-11-21"', [A, C]),
        ('start < "2026-11-21"', [B]),
        ("duration > 60", [A]),
        ("exit_code == 0", [A]),
        ('id ~ "*7f3a9c"', [A]),
        # substring and glob and regex
        ('"net" in name', [A]),
        ('"net" not in name', [B]),
        ('name ~ "resnet*"', [A]),
        ('name ~ "res?et*"', [A]),
        ('name ~ "RESNET*"', []),
        ('name !~ "resnet*"', [B]),
        ("name ~ /net\\d+/", [A]),
        ("name ~ /^v/", [B]),
        ("name ~ /^RES/i", [A]),
        ("name ~ /g$/", [A, B]),
        # tags
        ("tags.baseline", [A]),
        ("not tags.baseline", [B, C]),
        ('tags.owner == "ana"', [A]),
        ('tags.owner in ["ana", "bob"]', [A, B]),
        ("tags.owner is null", [C]),
        ('"baseline" in tags', [A]),
        ("tags.stage", [A]),
        # bare names: metrics first, then params
        ("lr < 0.01", [A]),
        ("val_acc > 0.6", [A]),
        ("opt == 'sgd'", [B]),
        # backquoted and slashed keys
        ("params.`opt/lr` == 0.5", [A]),
        ("`params.opt/lr` == 0.5", [A]),
        ("metrics.train/loss < 1", [A]),
        ("metrics.`train/loss` < 1", [A]),
        # literals alone
        ("true", [A, B, C]),
        ("false", []),
        # keywords in capitals, as SQL users type them
        ("params.lr < 0.01 AND NOT tags.nope", [A]),
        ("params.lr IS NOT NULL", [A, B]),
    ],
)
def test_expressions_keep_the_runs_they_describe(expr, expected):
    assert keep(expr) == expected


# ------------------------------------------------------- missing values, NaN


def test_comparison_with_a_missing_value_is_false_and_not_makes_it_true():
    # documented two-valued logic: runs without lr are not "< 0.01" and not ">= 0.01"...
    assert keep("params.lr < 0.01") == [A]
    assert keep("params.lr >= 0.01") == [B]
    # ... so "not (lr < 0.01)" keeps the runs that have no lr at all
    assert keep("not (params.lr < 0.01)") == [B, C]
    assert keep("not params.lr < 0.01") == [B, C]  # not applies to the comparison
    # != is a comparison too: a run without opt is not "!= adam"
    assert keep("params.opt != 'adam'") == [B]
    assert keep("not (params.opt == 'adam')") == [B, C]
    assert keep("params.opt not in ['adam']") == [B]


def test_is_null_finds_missing_values_and_nulls():
    assert keep("params.lr is null") == [C]
    assert keep("params.lr is not null") == [A, B]
    assert keep("name is null") == [C]  # name stored as null
    assert keep("duration is null") == [B, C]


def test_nan_compares_false_but_is_not_null():
    assert keep("metrics.loss < 1") == [A]
    assert keep("metrics.loss >= 1") == []
    assert keep("metrics.loss == metrics.loss") == [A]  # NaN is not equal to itself
    assert keep("metrics.loss != 0.2") == []  # A's is 0.2, B's is NaN: both false
    assert keep("metrics.loss is null") == [C]
    assert keep("not (metrics.loss < 1)") == [B, C]
    nan_list = {"params.x": [NAN]}
    assert compile_where("params.x == [1]")(nan_list) is False


def test_type_mismatch_is_false_not_an_error():
    assert keep("params.opt < 3") == []
    assert keep("params.opt > 3") == []
    assert keep("params.lr == '0.001'") == []
    assert keep("params.lr ~ '0*'") == []  # glob on a number
    assert keep("params.use_bn == 1") == []  # a bool is not a number
    assert keep("3 in name") == []
    assert keep("params.lr in 'abc'") == []
    assert keep("params.layers < 3") == []


def test_a_param_or_metric_explicitly_named_never_errors_when_unknown():
    assert keep("params.nothing_like_this > 1") == []
    assert keep("metrics.nope is null") == [A, B, C]


def test_unicode_names_values_and_spaces():
    row = {"params.学习率": 0.1, "name": "模型-α", "tags": ["équipe=ç"], "params.a b": 1}
    assert compile_where("params.学习率 == 0.1")(row)
    assert compile_where("name == '模型-α'")(row)
    assert compile_where("name ~ '模型*'")(row)
    assert compile_where("tags.équipe == 'ç'")(row)
    assert compile_where("params.`a b` == 1")(row)
    assert compile_where("name\u00a0==\u3000'模型-α'")(row)  # unicode spaces separate tokens


def test_strings_with_quotes_and_escapes():
    row = {"name": 'say "hi"\n', "params.q": "it's"}
    assert compile_where('name == "say \\"hi\\"\\n"')(row)
    assert compile_where("params.q == 'it\\'s'")(row)
    assert compile_where('params.q == "it\'s"')(row)
    assert compile_where('name ~ /"hi"/')(row)


def test_backquote_inside_a_quoted_name_is_doubled():
    assert compile_where("params.`a``b` == 1")({"params.a`b": 1})


def test_numbers_of_every_spelling():
    row = {"params.x": 1000, "params.y": 0.5, "params.z": -2}
    assert compile_where("params.x == 1e3")(row)
    assert compile_where("params.x == 1000.0")(row)
    assert compile_where("params.y == .5")(row)
    assert compile_where("params.y == 5E-1")(row)
    assert compile_where("params.z == -2")(row)
    assert compile_where("params.z<-1")(row)
    assert compile_where("params.x > 99999999999999999999")(row) is False


def test_newlines_in_the_expression_are_spaces():
    assert keep("params.lr < 0.01\n  and tags.baseline") == [A]


# ----------------------------------------------------------- name checking


def test_bare_names_are_checked_against_the_columns_when_known():
    cols = {k for r in ROWS for k in r}
    assert compile_where("val_acc > 0.9", cols)(RUN_A)
    with pytest.raises(
        UnknownName, match=r"no column, metric or param named 'val_ac'.*metrics.val_acc"
    ):
        compile_where("val_ac > 0.9", cols)
    both = cols | {"metrics.lr"}
    with pytest.raises(
        UnknownName, match=r"'lr' is both metrics.lr and params.lr: write one of them at column 1"
    ):
        compile_where("lr > 0", both)
    # an explicit prefix is never an error: the runs may simply lack it
    assert compile_where("params.nope > 1", cols)(RUN_A) is False


def test_filter_rows_checks_names_against_the_rows_it_gets():
    assert [r["id"] for r in filter_rows(ROWS, "val_acc > 0.9")] == [RUN_A["id"]]
    assert filter_rows(ROWS, None) == ROWS
    assert filter_rows(ROWS, "") == ROWS
    assert filter_rows([], "whatever > 1") == []
    with pytest.raises(UnknownName):
        filter_rows(ROWS, "whatever > 1")


# ------------------------------------------------------------------ errors


@pytest.mark.parametrize(
    ("expr", "message"),
    [
        ("params.lr <", "--where: expected a value after '<' at column 12"),
        ("params.lr < and x", "--where: expected a value after '<' at column 13"),
        ("", "--where: empty expression at column 1"),
        ("   ", "--where: empty expression at column 4"),
        (
            "(params.lr < 1",
            "--where: expected ')' to match the '(' opened at column 1; found the end at column 15",
        ),
        ("params.lr < 1)", "--where: unexpected ')' at column 14"),
        ("params.lr 1", "--where: unexpected '1' (missing 'and' or 'or'?) at column 11"),
        ("params.lr = 1", "--where: '=' compares nothing: write '==' at column 11"),
        ("params.lr == null", "--where: nothing equals null: write 'is null' at column 11"),
        ("params.lr != null", "--where: nothing equals null: write 'is not null' at column 11"),
        ("params.lr < null", "--where: nothing is ordered against null at column 11"),
        (
            "0 < params.lr < 1",
            "--where: comparisons do not chain: join them with 'and' at column 15",
        ),
        (
            "name ~ 3",
            "--where: expected a pattern (\"glob*\" or /regex/) after '~', not '3' at column 8",
        ),
        (
            "name ~",
            "--where: expected a pattern (\"glob*\" or /regex/) after '~', not the end at column 7",
        ),
        (
            "name ~ /(/",
            "--where: bad regular expression: missing ), unterminated subpattern "
            "at position 0 at column 8",
        ),
        ("name ~ /abc", "--where: unterminated regular expression (missing closing /) at column 8"),
        ("name ~ /abc/x", "--where: unknown regex flag 'x' (only i) at column 13"),
        ("name == 'abc", "--where: unterminated string (missing closing ') at column 9"),
        ("params.`abc", "--where: unterminated `name` (missing closing `) at column 8"),
        ("params.`` == 1", "--where: empty `` name at column 8"),
        ("a and", "--where: expected a condition after 'and' at column 6"),
        ("a or", "--where: expected a condition after 'or' at column 5"),
        ("not", "--where: expected a condition after 'not' at column 4"),
        ("a is 3", "--where: expected 'null' after 'is' at column 6"),
        ("a is not 3", "--where: expected 'null' after 'is not' at column 10"),
        ("a in", "--where: expected a value after 'in' at column 5"),
        ("a $ b", "--where: unexpected character '$' at column 3"),
        ("1x > 2", "--where: malformed number '1x' at column 1"),
        ("a in [1, b]", "--where: a list holds literal values, not 'b' at column 10"),
        ("a in [1 2]", "--where: expected ',' or ']' in the list, found '2' at column 9"),
        (
            "a in [1,",
            "--where: expected ']' to match the '[' opened at column 6; found the end at column 9",
        ),
        ("(a < 1) < 2", "--where: the left side of '<' is a condition, not a value at column 9"),
        ("a < (b < 1)", "--where: expected a value after '<', not a condition at column 5"),
        ("/x/", "--where: unexpected character '/' at column 1"),
        ("a and ()", "--where: empty parentheses at column 8"),
    ],
)
def test_bad_expressions_fail_with_one_line_and_the_column(expr, message):
    with pytest.raises(QuerySyntaxError) as info:
        compile_where(expr)
    assert str(info.value) == message
    assert "\n" not in str(info.value)
    assert isinstance(info.value, UsageError)
    assert info.value.exit_code == 2
    assert info.value.column == int(message.rsplit("column ", 1)[1])


def test_the_label_names_the_origin():
    with pytest.raises(QueryError, match=r"^where: expected a value after '>' at column 4$"):
        compile_where("a >", label="where")


def test_deep_nesting_is_an_error_not_a_crash():
    with pytest.raises(QuerySyntaxError, match="nested more than"):
        compile_where("(" * 5000 + "a" + ")" * 5000)
    with pytest.raises(QuerySyntaxError, match="nested more than"):
        compile_where("not " * 5000 + "a")
    with pytest.raises(QuerySyntaxError, match="nested more than"):
        compile_where("a in " + "[" * 5000)
    # wide is fine
    pred = compile_where(" or ".join(f"params.x == {i}" for i in range(3000)))
    assert pred({"params.x": 2999})


def test_a_non_string_expression_is_a_usage_error():
    with pytest.raises(UsageError):
        compile_where(3)  # type: ignore[arg-type]


# --------------------------------------------------------------- property


VALUES = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-5, 5),
    st.floats(allow_nan=True, allow_infinity=True, width=32),
    st.sampled_from(["", "a", "abc", "b*", "ü", "adam", "sgd"]),
    st.lists(st.integers(-2, 2), max_size=3),
)
KEYS = ["params.a", "params.b", "metrics.m", "name"]
ROW = st.fixed_dictionaries(
    {},
    optional={
        **{k: VALUES for k in KEYS},
        "tags": st.lists(st.sampled_from(["t", "u", "k=v", "k=w"]), max_size=3),
    },
)


def _lit(v) -> str:
    if v is None:
        return "null"
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, float):
        if math.isnan(v) or math.isinf(v):
            return "0.5"
        return repr(v)
    if isinstance(v, int):
        return str(v)
    if isinstance(v, str):
        return '"' + v + '"'
    return "[" + ", ".join(_lit(x) for x in v) + "]"


ATOMS = st.one_of(
    st.builds(
        lambda k, op, v: f"{k} {op} {_lit(v)}",
        st.sampled_from(KEYS),
        st.sampled_from(["==", "!=", "<", "<=", ">", ">="]),
        VALUES.filter(lambda v: v is not None),
    ),
    st.builds(lambda k: f"{k} is null", st.sampled_from(KEYS)),
    st.builds(lambda k: f"{k} is not null", st.sampled_from(KEYS)),
    st.builds(
        lambda k, p: f"{k} ~ {_lit(p)}", st.sampled_from(KEYS), st.sampled_from(["a*", "*", "?"])
    ),
    st.builds(lambda k: f'{k} in [1, 2, "a"]', st.sampled_from(KEYS)),
    st.sampled_from(["tags.t", 'tags.k == "v"', "true", "false", "params.a"]),
)
EXPRS = st.recursive(
    ATOMS,
    lambda inner: st.one_of(
        st.builds(lambda a, b: f"({a}) and ({b})", inner, inner),
        st.builds(lambda a, b: f"({a}) or ({b})", inner, inner),
        st.builds(lambda a: f"not ({a})", inner),
    ),
    max_leaves=12,
)


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(EXPRS, ROW)
def test_grammar_expressions_compile_and_never_raise_on_any_row(expr, row):
    result = compile_where(expr)(row)
    assert isinstance(result, bool)


@pytest.mark.slow
@settings(max_examples=300, deadline=None)
@given(EXPRS, EXPRS, ROW)
def test_boolean_laws_hold_on_every_row(a, b, row):
    ev = lambda e: compile_where(e)(row)  # noqa: E731
    pa, pb = ev(a), ev(b)
    assert ev(f"not ({a})") == (not pa)
    assert ev(f"not not ({a})") == pa
    assert ev(f"({a}) and ({b})") == (pa and pb)
    assert ev(f"({a}) or ({b})") == (pa or pb)
    assert ev(f"not (({a}) and ({b}))") == ev(f"not ({a}) or not ({b})")  # De Morgan
    assert ev(f"not (({a}) or ({b}))") == ev(f"not ({a}) and not ({b})")
    assert ev(f"({a}) or not ({a})")  # two-valued logic: excluded middle holds


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(KEYS), VALUES.filter(lambda v: v is not None), ROW)
def test_a_comparison_and_its_opposite_are_never_both_true(key, value, row):
    lt = compile_where(f"{key} < {_lit(value)}")(row)
    ge = compile_where(f"{key} >= {_lit(value)}")(row)
    eq = compile_where(f"{key} == {_lit(value)}")(row)
    ne = compile_where(f"{key} != {_lit(value)}")(row)
    assert not (lt and ge)
    assert not (eq and ne)
    present = row.get(key) is not None and not (
        isinstance(row.get(key), float) and math.isnan(row[key])
    )
    if not present:  # missing, null or NaN: every comparison is false
        assert not (lt or ge or eq or ne)


WORDS = ["and", "or", "not", "in", "is", "null", "true", " params.", " metrics.", "tags."]
ALPHABET = st.sampled_from(
    [*"abcpm.tg_ `'\"/\\[](),!=<>~-+0123456789eE ", *WORDS, "ü", "\u3000", "\n"]
)


@pytest.mark.slow
@settings(max_examples=1000, deadline=None)
@given(st.lists(ALPHABET, max_size=30).map("".join), ROW)
def test_any_text_either_compiles_or_raises_a_usage_error(text, row):
    try:
        pred = compile_where(text)
    except QueryError as exc:
        assert isinstance(exc, UsageError)
        msg = str(exc)
        assert msg.startswith("--where: ") and "\n" not in msg
        assert 1 <= exc.column <= len(text) + 1
        return
    assert isinstance(pred(row), bool)


@pytest.mark.slow
@settings(max_examples=300, deadline=None)
@given(st.text(max_size=40))
def test_arbitrary_unicode_text_raises_only_usage_errors(text):
    try:
        compile_where(text)
    except QueryError:
        pass
