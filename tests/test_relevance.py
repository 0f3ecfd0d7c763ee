import math
import pickle

import pytest

from surveykit.instruments.relevance import RelevanceError, parse


def holds(source, **answers):
    return parse(source).evaluate(answers)


# --- parsing each construct -----------------------------------------------------


@pytest.mark.parametrize(
    ("source", "answers", "expected"),
    [
        # string literals, both quote styles and every escape
        ("$q == 'yes'", {"q": "yes"}, True),
        ('$q == "yes"', {"q": "yes"}, True),
        (r"$q == 'it\'s'", {"q": "it's"}, True),
        (r'$q == "say \"hi\""', {"q": 'say "hi"'}, True),
        (r"$q == 'back\\slash'", {"q": "back\\slash"}, True),
        ('$q == "it\'s"', {"q": "it's"}, True),
        ("$q == ''", {"q": ""}, True),
        ("$q == 'ünïcødé ✓'", {"q": "ünïcødé ✓"}, True),
        # numbers
        ("$n == 42", {"n": 42}, True),
        ("$n == -7", {"n": -7}, True),
        ("$n == 2.5", {"n": 2.5}, True),
        ("$n == -0.25", {"n": -0.25}, True),
        ("$n == 3", {"n": 3.0}, True),
        ("$n == 007", {"n": 7}, True),
        # keyword literals
        ("$b == true", {"b": True}, True),
        ("$b == false", {"b": False}, True),
        ("$b == null", {}, True),
        # every comparison operator
        ("$n != 1", {"n": 2}, True),
        ("$n < 3", {"n": 2}, True),
        ("$n <= 2", {"n": 2}, True),
        ("$n > 1", {"n": 2}, True),
        ("$n >= 2", {"n": 2}, True),
        ("$n<3", {"n": 2}, True),
        # references on both sides, literals on the left
        ("$a == $b", {"a": "x", "b": "x"}, True),
        ("1 < $n", {"n": 2}, True),
        ("'a' == 'a'", {}, True),
        # membership
        ("$mode in ['virtual', 'phone']", {"mode": "phone"}, True),
        ("$mode not in ['virtual', 'phone']", {"mode": "phone"}, False),
        ("$n in [1, 2.5, true, null, 'x']", {"n": 2.5}, True),
        ("$n in [1]", {"n": 1}, True),
        # boolean operators and parentheses
        ("$a == 1 and $b == 2", {"a": 1, "b": 2}, True),
        ("$a == 1 or $b == 2", {"a": 0, "b": 2}, True),
        ("not $a == 1", {"a": 2}, True),
        ("($a == 1)", {"a": 1}, True),
        ("((($a == 1)))", {"a": 1}, True),
        ("not not $a", {"a": "x"}, True),
        # functions
        ("answered($q)", {"q": "x"}, True),
        ("count($q) == 2", {"q": ["a", "b"]}, True),
        ("selected($q, 'a')", {"q": ["a", "b"]}, True),
        ('selected($q, "a")', {"q": ["a"]}, True),
        # whitespace of every kind is ignored
        ("\t$a\n==\r\n 1 ", {"a": 1}, True),
        ("answered ( $q )", {"q": "x"}, True),
        # a comparison result compared again
        ("($a == 1) == true", {"a": 1}, True),
        ("answered($q) == false", {}, True),
    ],
)
def test_parses_and_evaluates_each_construct(source, answers, expected):
    expression = parse(source)
    assert expression.source == source
    assert expression.evaluate(answers) is expected


def test_longest_question_id_is_accepted():
    qid = "q" + "x" * 63
    assert parse(f"${qid} == 1").references == frozenset({qid})


# --- errors and their positions ---------------------------------------------------


@pytest.mark.parametrize(
    ("source", "position", "message"),
    [
        # empty
        ("", 0, "empty expression"),
        ("   \n\t", 0, "empty expression"),
        # unknown tokens
        ("$a @ 1", 3, "unexpected character '@'"),
        ("$a === 1", 5, "unexpected '='"),
        ("$a == 1 & $b", 8, "unexpected character '&'"),
        ("!$a", 0, "unexpected character '!'"),
        ("$a == .5", 6, "unexpected character '.'"),
        ("$a == - 1", 6, "unexpected character '-'"),
        ("$a == ´x´", 6, "unexpected character"),
        # malformed numbers
        ("$a == 1.", 6, "invalid number"),
        ("$a == 1.2.3", 6, "invalid number"),
        ("$a == 1e5", 6, "invalid number"),
        ("$a == 12abc", 6, "invalid number"),
        # references
        ("$ == 1", 0, "expected a question id after '$'"),
        ("${} == 1", 0, "expected a question id after '${'"),
        ("$a == ${b", 6, "expected '}' after '${b'"),
        ("${B} = 1", 0, "invalid question id 'B'"),
        ("count-selected($a, 'x')", 19, "count-selected() takes exactly 1 argument (2 given)"),
        ("$a == $", 6, "expected a question id after '$'"),
        ("$Consent", 0, "invalid question id 'Consent'"),
        ("$1a", 0, "invalid question id '1a'"),
        ("$_a", 0, "invalid question id '_a'"),
        ("$" + "a" * 65, 0, "invalid question id"),
        # strings
        ("$a == 'abc", 6, "unterminated string"),
        ('$a == "abc', 6, "unterminated string"),
        ("$a == 'abc\"", 6, "unterminated string"),
        ("$a == 'abc\\'", 6, "unterminated string"),
        ("$a == 'abc\\", 6, "unterminated string"),
        ("$a == 'a\\nb'", 8, "invalid escape '\\n'"),
        # unknown names and functions
        ("consent == true", 0, "unknown name 'consent' (question references start with '$')"),
        ("$a == TRUE", 6, "unknown name 'TRUE' (keywords are lowercase)"),
        ("$a == 1 AND $b", 8, "unexpected 'AND'"),
        ("$a == None", 6, "unknown name 'None'"),
        ("foo($a)", 0, "unknown function 'foo'"),
        ("$a == 1 or len($b) > 1", 11, "unknown function 'len'"),
        ("Answered($a)", 0, "unknown function 'Answered' (function names are lowercase)"),
        # argument counts and kinds
        ("answered()", 9, "answered() takes exactly 1 argument (0 given)"),
        ("answered($a, $b)", 13, "answered() takes exactly 1 argument (2 given)"),
        ("count($a, $b, $c)", 10, "count() takes exactly 1 argument (3 given)"),
        ("count('a')", 6, "count() expects a $reference, not string 'a'"),
        ("answered(1)", 9, "answered() expects a $reference, not number 1"),
        ("selected($a)", 11, "selected() takes exactly 2 arguments (1 given)"),
        ("selected($a, 'x', 'y')", 18, "selected() takes exactly 2 arguments (3 given)"),
        ("selected('x', $a)", 9, "selected() expects a $reference"),
        ("selected($a, $b)", 13, "selected() expects a string value, not reference $b"),
        ("selected($a, 1)", 13, "selected() expects a string value, not number 1"),
        ("selected($a, true)", 13, "selected() expects a string value, not 'true'"),
        ("answered(($a))", 9, "unexpected '('"),
        ("answered($a == 1)", 12, "unexpected '=='"),
        ("answered($a", 11, "unexpected end of expression"),
        ("answered $a", 0, "unknown name 'answered'"),
        # trailing and misplaced tokens
        ("$a == 1 $b", 8, "unexpected reference $b"),
        ("$a == 1)", 7, "unexpected ')'"),
        ("$a == 1 == 1", 8, "unexpected '=='"),
        ("$a $b", 3, "unexpected reference $b"),
        ("$a not $b", 3, "unexpected 'not'"),
        ("$a == 1 'x'", 8, "unexpected string 'x'"),
        ("$a == 1 2", 8, "unexpected number 2"),
        ("$a ==", 5, "unexpected end of expression"),
        ("$a == 1 and", 11, "unexpected end of expression"),
        ("and $a", 0, "unexpected 'and'"),
        ("$a or or $b", 6, "unexpected 'or'"),
        ("$a == not $b", 6, "unexpected 'not'"),
        ("not", 3, "unexpected end of expression"),
        ("()", 1, "unexpected ')'"),
        ("($a == 1", 8, "unexpected end of expression, expected ')'"),
        ("($a == 1]", 8, "unexpected ']', expected ')'"),
        # `in` needs a non-empty list of literals
        ("$a in 'x'", 6, "expected a list literal after 'in'"),
        ("$a in $b", 6, "expected a list literal after 'in'"),
        ("$a in", 5, "expected a list literal after 'in'"),
        ("$a not in ('x')", 10, "expected a list literal after 'in'"),
        ("$a in []", 6, "empty list after 'in'"),
        ("$a in [$b]", 7, "expected a literal list item"),
        ("$a in ['x',]", 11, "unexpected ']'"),
        ("$a in ['x' 'y']", 11, "expected ',' or ']'"),
        ("$a in ['x'", 10, "unexpected end of expression"),
        ("$a in [['x']]", 7, "unexpected '['"),
        ("['x'] == $a", 0, "list literals are only allowed after 'in'"),
        ("$a == ['x']", 6, "list literals are only allowed after 'in'"),
        ("in ['x']", 0, "unexpected 'in'"),
        # keywords are case-sensitive
        ("$a == 1 Or $b", 8, "unexpected 'Or'"),
        ("NOT $a", 0, "unknown name 'NOT' (keywords are lowercase)"),
        ("$a IN ['x']", 3, "unexpected 'IN'"),
        ("$a == Null", 6, "unknown name 'Null' (keywords are lowercase)"),
    ],
)
def test_malformed_expressions_report_message_and_position(source, position, message):
    with pytest.raises(RelevanceError) as info:
        parse(source)
    assert info.value.position == position
    assert message in info.value.message
    assert str(info.value) == f"{info.value.message} at character {position}"


def test_error_is_a_value_error_with_readable_str():
    with pytest.raises(ValueError) as info:
        parse("($a == 1 and $b))")
    err = info.value
    assert isinstance(err, RelevanceError)
    assert err.message == "unexpected ')'"
    assert err.position == 16
    assert str(err) == "unexpected ')' at character 16"


def test_error_survives_pickling():
    err = RelevanceError("unexpected ')'", 12)
    copy = pickle.loads(pickle.dumps(err))
    assert (copy.message, copy.position, str(copy)) == (err.message, err.position, str(err))


def test_long_tokens_are_shortened_in_messages():
    with pytest.raises(RelevanceError) as info:
        parse("$a == 1 '" + "x" * 200 + "'")
    assert len(info.value.message) < 80
    assert info.value.position == 8


def test_non_string_source_is_a_type_error():
    with pytest.raises(TypeError):
        parse(None)  # type: ignore[arg-type]


# --- limits -----------------------------------------------------------------------


def test_source_of_exactly_1000_characters_is_accepted():
    source = "$a == '" + "x" * 992 + "'"
    assert len(source) == 1000
    assert parse(source).evaluate({"a": "x" * 992}) is True


def test_source_longer_than_1000_characters_is_rejected():
    source = "$a == '" + "x" * 993 + "'"
    with pytest.raises(RelevanceError) as info:
        parse(source)
    assert info.value.position == 1000
    assert "longer than 1000 characters" in info.value.message


def test_long_but_flat_boolean_chains_are_fine():
    source = " or ".join(f"$q{i} == {i}" for i in range(70))
    assert len(source) <= 1000
    expression = parse(source)
    assert expression.evaluate({"q69": 69}) is True
    assert expression.evaluate({}) is False
    assert len(expression.references) == 70


def test_32_levels_of_parentheses_are_accepted():
    assert parse("(" * 32 + "$a" + ")" * 32).evaluate({"a": "x"}) is True


def test_33_levels_of_parentheses_are_rejected_at_the_innermost_paren():
    with pytest.raises(RelevanceError) as info:
        parse("(" * 33 + "$a" + ")" * 33)
    assert info.value.position == 32
    assert "nested deeper than 32 levels" in info.value.message


def test_32_nots_are_accepted_and_33_rejected():
    assert parse("not " * 32 + "$a").evaluate({"a": "x"}) is True
    with pytest.raises(RelevanceError) as info:
        parse("not " * 33 + "$a")
    assert info.value.position == 32 * 4


def test_mixed_nesting_counts_parentheses_and_nots_together():
    assert parse("not (" * 16 + "$a" + ")" * 16).evaluate({}) is False
    with pytest.raises(RelevanceError) as info:
        parse("not (" * 16 + "not $a" + ")" * 16)
    assert info.value.position == 16 * 5


def test_sibling_parentheses_do_not_add_up():
    deep = "(" * 32 + "$a" + ")" * 32
    assert parse(f"{deep} and {deep}").evaluate({"a": 1}) is True


def test_pathological_inputs_fail_cleanly():
    for source in ["(" * 1000, "not " * 250, "[" * 1000, "'" * 999, "$" * 1000, "\\" * 1000]:
        with pytest.raises(RelevanceError):
            parse(source)


# --- references ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("source", "references"),
    [
        ("true", set()),
        ("'$not_a_ref' == '$b'", set()),
        ("$a == 1", {"a"}),
        ("$a == $a", {"a"}),
        ("$a == $b", {"a", "b"}),
        ("$mode in ['x'] and not $consent", {"mode", "consent"}),
        ("answered($a) or count($b) > 1 or selected($c, 'x')", {"a", "b", "c"}),
        ("(($deep_1))", {"deep_1"}),
        ("$x not in [1] or ($y == 2 and $z)", {"x", "y", "z"}),
    ],
)
def test_references(source, references):
    refs = parse(source).references
    assert isinstance(refs, frozenset)
    assert refs == frozenset(references)


# --- evaluation semantics -----------------------------------------------------------


def test_missing_and_none_answers_are_null():
    for answers in ({}, {"q": None}):
        assert parse("$q == null").evaluate(answers) is True
        assert parse("$q != null").evaluate(answers) is False
        # The empty string literal asks "unanswered?", as in XLSForm (docs/instruments.md).
        assert parse("$q == ''").evaluate(answers) is True
        assert parse("$q != ''").evaluate(answers) is False
        assert parse("$q == 0").evaluate(answers) is False
        assert parse("$q == false").evaluate(answers) is False
        assert parse("$q in [null]").evaluate(answers) is True
        assert parse("$q not in ['x']").evaluate(answers) is True
        assert parse("$q").evaluate(answers) is False


def test_empty_values_are_not_null():
    assert holds("$q == null", q="") is False
    assert holds("$q == null", q=0) is False
    assert holds("$q == null", q=False) is False
    assert holds("$q == null", q=[]) is False
    assert holds("null == null") is True


@pytest.mark.parametrize(
    ("source", "answers", "expected"),
    [
        ("$b == 1", {"b": True}, False),
        ("$b == 0", {"b": False}, False),
        ("$b != 1", {"b": True}, True),
        ("$b == 1.0", {"b": True}, False),
        ("$n == true", {"n": 1}, False),
        ("$n == false", {"n": 0}, False),
        ("$b == true", {"b": True}, True),
        ("$b in [1, 0]", {"b": True}, False),
        ("$b in [1, true]", {"b": True}, True),
        ("$n in [true, false]", {"n": 1}, False),
        ("$n not in [true]", {"n": 1}, True),
        ("$a == $b", {"a": True, "b": 1}, False),
        ("true == 1", {}, False),
        ("$n == 1", {"n": 1.0}, True),
        ("$n == 1.5", {"n": 1.5}, True),
        ("$s == 1", {"s": "1"}, False),
        ("$s == 'Yes'", {"s": "yes"}, False),
        ("$a == $b", {"a": ["x", "y"], "b": ["x", "y"]}, True),
    ],
)
def test_equality_keeps_booleans_apart_from_numbers(source, answers, expected):
    assert parse(source).evaluate(answers) is expected


@pytest.mark.parametrize(
    ("source", "answers", "expected"),
    [
        ("$n > 3", {"n": 4}, True),
        ("$n > 3", {"n": 3}, False),
        ("$n >= 3", {"n": 3}, True),
        ("$n < 3.5", {"n": 3}, True),
        ("$n <= -1", {"n": -1}, True),
        ("$n > 0", {"n": 10**30}, True),
        ("$d >= '2024-01-01'", {"d": "2024-03-05"}, True),
        ("$d < '2024-01-01'", {"d": "2024-03-05"}, False),
        ("'b' > 'a'", {}, True),
        # mixed or unordered types are never ordered, in either direction
        ("$n > 3", {"n": "4"}, False),
        ("$n < 3", {"n": "4"}, False),
        ("$s < 'x'", {"s": 1}, False),
        ("$b > 0", {"b": True}, False),
        ("$b <= 1", {"b": False}, False),
        ("$n > 0", {}, False),
        ("$n < 0", {}, False),
        ("$n <= null", {"n": None}, False),
        ("$l > 0", {"l": [1]}, False),
        ("$l < 'x'", {"l": ["a"]}, False),
        ("$n > 0", {"n": float("nan")}, False),
        ("$n <= 0", {"n": float("nan")}, False),
        ("$n > 0", {"n": math.inf}, True),
        ("count($q) >= 2", {"q": ["a", "b"]}, True),
    ],
)
def test_ordering(source, answers, expected):
    assert parse(source).evaluate(answers) is expected


@pytest.mark.parametrize(
    ("answer", "expected"),
    [
        (None, False),
        ("", False),
        ("   ", False),
        ("\t\n", False),
        ([], False),
        ((), False),
        ("x", True),
        (" x ", True),
        (False, True),
        (True, True),
        (0, True),
        (0.0, True),
        ([""], True),
        (["a"], True),
        ({}, True),
    ],
)
def test_answered(answer, expected):
    assert holds("answered($q)", q=answer) is expected
    # a bare reference used as a condition follows answered()
    assert holds("$q", q=answer) is expected
    assert holds("not $q", q=answer) is not expected


def test_answered_on_missing_key():
    assert holds("answered($q)") is False
    assert holds("$q") is False


@pytest.mark.parametrize(
    ("answer", "expected"),
    [
        (["a", "b"], True),
        (("a",), True),
        (["b"], False),
        ([], False),
        ("a", True),
        ("b", False),
        ("ab", False),
        (None, False),
        (True, False),
        (1, False),
        ([["a"]], False),
    ],
)
def test_selected(answer, expected):
    assert holds("selected($q, 'a')", q=answer) is expected


@pytest.mark.parametrize(
    ("answer", "expected"),
    [
        (None, 0),
        ([], 0),
        (["a"], 1),
        (["a", "b", "c"], 3),
        ("a", 1),
        ("", 0),
        ("  ", 0),
        (False, 1),
        (0, 1),
    ],
)
def test_count(answer, expected):
    assert holds(f"count($q) == {expected}", q=answer) is True
    assert holds("count($q)", q=answer) is (expected > 0)


def test_count_on_missing_key_is_zero():
    assert holds("count($q) == 0") is True


def test_functions_read_from_the_right_question():
    answers = {"a": ["x"], "b": []}
    assert parse("selected($a, 'x') and not selected($b, 'x')").evaluate(answers) is True
    assert parse("count($a) == 1 and count($b) == 0").evaluate(answers) is True


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("'x'", True),
        ("''", False),
        ("' '", True),
        ("1", True),
        ("0", False),
        ("0.0", False),
        ("-1", True),
        ("true", True),
        ("false", False),
        ("null", False),
    ],
)
def test_literals_as_conditions_use_python_truthiness(source, expected):
    assert parse(source).evaluate({}) is expected


def test_membership_is_exact_not_substring():
    assert holds("$mode in ['virtual', 'phone']", mode="virtual") is True
    assert holds("$mode in ['virtual', 'phone']", mode="virt") is False
    assert holds("$mode in ['virtual']", mode=["virtual"]) is False
    assert holds("$n in [1, 2]", n=2.0) is True
    assert holds("$n in [null]", n=0) is False


@pytest.mark.parametrize(
    ("a", "b", "c", "expected"),
    [
        (True, False, False, False),
        (False, False, True, True),
        (True, True, False, True),
        (False, True, True, True),
    ],
)
def test_and_binds_tighter_than_or(a, b, c, expected):
    answers = {"a": a, "b": b, "c": c}
    # a and b or c == (a and b) or c
    assert parse("$a == true and $b == true or $c == true").evaluate(answers) is expected
    # c or a and b == c or (a and b)
    assert parse("$c == true or $a == true and $b == true").evaluate(answers) is expected


def test_parentheses_override_precedence():
    answers = {"a": False, "b": False, "c": True}
    assert parse("$a == true and $b == true or $c == true").evaluate(answers) is True
    assert parse("$a == true and ($b == true or $c == true)").evaluate(answers) is False


def test_not_binds_tighter_than_and_and_or():
    # not $a and $b == (not $a) and $b
    assert holds("not $a and $b", a="", b="x") is True
    assert holds("not $a and $b", a="x", b="") is False
    assert holds("not $a and $b", a="", b="") is False
    # not $a or $b == (not $a) or $b
    assert holds("not $a or $b", a="x", b="x") is True
    assert holds("not ($a or $b)", a="x", b="x") is False


def test_not_applies_to_the_whole_comparison():
    assert holds("not $n == 1", n=2) is True
    assert holds("not $n == 1", n=1) is False
    assert holds("not $n in [1, 2]", n=3) is True


def test_not_in_and_not_before_in():
    assert holds("$m not in ['a']", m="b") is True
    assert holds("not $m in ['a']", m="b") is True
    assert holds("not $m not in ['a']", m="a") is True


def test_and_or_short_circuit():
    class Recording(dict):
        def get(self, key, default=None):
            seen.append(key)
            return super().get(key, default)

    seen: list[str] = []
    answers = Recording(a="x")
    assert parse("$a or $b").evaluate(answers) is True
    assert parse("not $a and $b").evaluate(answers) is False
    assert parse("$a == 'y' and $b").evaluate(answers) is False
    assert "b" not in seen
    assert parse("$missing or $b").evaluate(answers) is False
    assert seen[-2:] == ["missing", "b"]


def test_results_are_always_plain_bools():
    answers = {"q": ["a", "b"], "s": "x", "n": 3}
    for source in ["$s", "count($q)", "'x'", "1", "null", "$s and $n", "$s or $n", "$q"]:
        assert parse(source).evaluate(answers) in (True, False)
        assert type(parse(source).evaluate(answers)) is bool


def test_expression_is_reusable_and_immutable():
    expression = parse("$consent == true")
    assert expression.evaluate({"consent": True}) is True
    assert expression.evaluate({"consent": False}) is False
    assert expression == parse("$consent == true")
    with pytest.raises(AttributeError):
        expression.source = "true"  # type: ignore[misc]


def test_keyword_prefixes_are_plain_names():
    # "android" starts with "and" but is one word, so it is an unknown name
    with pytest.raises(RelevanceError) as info:
        parse("$a == 1 or android")
    assert info.value.message.startswith("unknown name 'android'")
    assert holds("$nothing", nothing="x") is True
    assert holds("$order == 1 and $android", order=1, android="x") is True


# --- robustness -----------------------------------------------------------------


class _RaisesOnEverything:
    def __eq__(self, other):
        raise RuntimeError("eq")

    def __ne__(self, other):
        raise RuntimeError("ne")

    def __lt__(self, other):
        raise RuntimeError("lt")

    def __bool__(self):
        raise RuntimeError("bool")

    def __len__(self):
        raise RuntimeError("len")

    def __iter__(self):
        raise RuntimeError("iter")

    __hash__ = None  # type: ignore[assignment]


class _LyingClass:
    @property  # type: ignore[misc]
    def __class__(self):
        raise RuntimeError("class")


class _BadList(list):
    def __iter__(self):
        raise RuntimeError("iter")

    def __len__(self):
        raise RuntimeError("len")


class _BadStr(str):
    def __eq__(self, other):
        raise RuntimeError("eq")

    def __lt__(self, other):
        raise RuntimeError("lt")

    def strip(self, chars=None):
        raise RuntimeError("strip")

    __hash__ = str.__hash__


class _NonBoolEq:
    """Like a numpy array: == returns something that refuses to become a bool."""

    def __eq__(self, other):
        return _RaisesOnEverything()

    __hash__ = None  # type: ignore[assignment]


_recursive_list: list = []
_recursive_list.append(_recursive_list)

_ODD_VALUES = [
    {"nested": {"dict": [1, 2]}},
    {1, 2},
    frozenset({"a"}),
    b"bytes",
    bytearray(b"x"),
    1 + 2j,
    float("nan"),
    float("inf"),
    -float("inf"),
    10**400,
    object(),
    object,
    len,
    _RaisesOnEverything(),
    _LyingClass(),
    _BadList(["a"]),
    _BadStr("a"),
    _NonBoolEq(),
    [_RaisesOnEverything(), _NonBoolEq()],
    _recursive_list,
    [[["deep"]]],
    iter([1, 2]),
    (x for x in range(3)),
    "x" * 100_000,
    "\x00",
    [None],
    Ellipsis,
    NotImplemented,
]

_PROBES = [
    "$q",
    "not $q",
    "$q == 1",
    "$q != 'a'",
    "$q == $q",
    "$q == $r",
    "$q != $r",
    "$q < 1",
    "$q >= 'a'",
    "$q > $r",
    "$q in ['a', 1, true, null]",
    "$q not in ['a']",
    "answered($q)",
    "count($q) > 0",
    "selected($q, 'a')",
    "$q and $r or not $q",
]


# Indexes rather than the values themselves: pytest inspects parameter values, and some
# of these objects are built to raise on exactly that kind of inspection.
@pytest.mark.parametrize("index", range(len(_ODD_VALUES)), ids=[type(v).__name__ for v in _ODD_VALUES])
def test_evaluation_never_raises_on_odd_answers(index):
    value = _ODD_VALUES[index]
    for source in _PROBES:
        result = parse(source).evaluate({"q": value, "r": value})
        assert type(result) is bool, source


def test_broken_answer_values_fall_back_sensibly():
    assert holds("$q == 'a'", q=_BadStr("a")) is False
    assert holds("answered($q)", q=_BadStr("a")) is True
    assert holds("answered($q)", q=_BadList(["a"])) is False
    assert holds("count($q)", q=_BadList(["a"])) is False
    assert holds("$q == 1", q=_LyingClass()) is False
    assert holds("answered($q)", q=_LyingClass()) is True


@pytest.mark.parametrize(
    "answers",
    [None, [], "not a mapping", 42, object(), {1: "non-str key"}],
    ids=["none", "list", "str", "int", "object", "int-keys"],
)
def test_evaluation_never_raises_on_odd_answer_containers(answers):
    expression = parse("$q == null and not answered($q) and count($q) == 0")
    assert expression.evaluate(answers) is True  # type: ignore[arg-type]


def test_evaluation_never_raises_when_the_mapping_itself_fails():
    class Broken(dict):
        def get(self, key, default=None):
            raise RuntimeError("storage down")

    assert parse("$q == null").evaluate(Broken()) is True
    assert parse("answered($q)").evaluate(Broken()) is False
