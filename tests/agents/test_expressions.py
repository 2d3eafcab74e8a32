import re

import pytest

from chamberlain.agents._exceptions import ExpressionError
from chamberlain.agents._expressions import compile_expression

STATE = {"intent": "return", "amount": 250.0, "order": {"id": "A1", "lines": [1, 2, 3]}, "tags": ["vip"]}


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("intent == 'return'", True),
        ("intent == 'return' and amount <= 200", False),
        ("amount > 200 or false", True),
        ("not (amount > 200)", False),
        ("order.id", "A1"),
        ("order['lines'][1]", 2),
        ("len(order.lines) == 3", True),
        ("'vip' in tags", True),
        ("100 < amount < 300", True),
        ("amount * 2 - 100", 400.0),
        ("lower('ABC')", "abc"),
        ("[intent, amount]", ["return", 250.0]),
        ("[{'line_no': 1, 'quantity': len(tags)}]", [{"line_no": 1, "quantity": 1}]),
        ("null", None),
    ],
)
def test_evaluates(source: str, expected: object) -> None:
    assert compile_expression(source)(STATE) == expected


def test_collects_the_state_fields_it_reads() -> None:
    assert compile_expression("intent == 'x' and amount > len(tags)").names == {"intent", "amount", "tags"}


@pytest.mark.parametrize(
    ("source", "message"),
    [
        ("__import__('os').system('id')", "is not allowed in an expression"),
        ("__import__('os')", "calls __import__(), which is not allowed"),
        ("order.__class__", None),
        ("(lambda: 1)()", "is not allowed in an expression"),
        ("[x for x in tags]", "is not allowed in an expression"),
        ("amount >", "is not a valid expression"),
        ("open('/etc/passwd')", "calls open(), which is not allowed"),
    ],
)
def test_refuses_what_is_not_in_the_language(source: str, message: str | None) -> None:
    if message is None:  # attribute access is a dict lookup: it can never reach object internals
        with pytest.raises(ExpressionError, match="KeyError"):
            compile_expression(source)(STATE)
        return
    with pytest.raises(ExpressionError, match=re.escape(message)):
        compile_expression(source)


def test_runtime_failure_names_the_expression() -> None:
    with pytest.raises(ExpressionError, match=r"'order.missing' failed: KeyError"):
        compile_expression("order.missing")(STATE)
