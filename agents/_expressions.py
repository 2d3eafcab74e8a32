"""A small, safe expression language for routing conditions and argument mappings.

Graph specs are configuration, often written by people who are not the code's
authors, so conditions must never reach ``eval``. Expressions use Python's syntax
(``intent == 'return' and amount <= 200``) but are parsed with :mod:`ast` and only
a whitelist of node types is compiled — into plain closures, once, at load time.
Bare names read state fields; ``a.b`` and ``a['b']`` read inside dicts; list and dict
literals build arguments (``[{'line_no': line_no, 'quantity': 1}]``); ``x if c else y``
chooses one of two values.
"""

from __future__ import annotations

import ast
import operator
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from chamberlain.agents._exceptions import ExpressionError

Evaluator = Callable[[Mapping[str, Any]], Any]

_COMPARE: dict[type[ast.cmpop], Callable[[Any, Any], bool]] = {
    ast.Eq: operator.eq,
    ast.NotEq: operator.ne,
    ast.Lt: operator.lt,
    ast.LtE: operator.le,
    ast.Gt: operator.gt,
    ast.GtE: operator.ge,
    ast.In: lambda a, b: a in b,
    ast.NotIn: lambda a, b: a not in b,
    ast.Is: operator.is_,
    ast.IsNot: operator.is_not,
}
_BINARY: dict[type[ast.operator], Callable[[Any, Any], Any]] = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.Div: operator.truediv,
    ast.FloorDiv: operator.floordiv,
    ast.Mod: operator.mod,
}
_FUNCTIONS: dict[str, Callable[..., Any]] = {
    "len": len,
    "min": min,
    "max": max,
    "abs": abs,
    "round": round,
    "lower": lambda s: str(s).lower(),
    "upper": lambda s: str(s).upper(),
    "str": str,
    "int": int,
    "float": float,
}
_CONSTANTS = {"true": True, "false": False, "null": None, "True": True, "False": False, "None": None}


@dataclass(frozen=True)
class Expression:
    """A compiled expression: its source, the state fields it reads, and its evaluator.
    ``members`` says what of them it reads: ``"a"`` for all of field a, ``"a.b"`` for its key b."""

    source: str
    names: frozenset[str]
    members: frozenset[str]
    _evaluate: Evaluator = field(repr=False, compare=False)

    def __call__(self, scope: Mapping[str, Any]) -> Any:
        try:
            return self._evaluate(scope)
        except (TypeError, KeyError, IndexError, ZeroDivisionError, ValueError, AttributeError) as exc:
            raise ExpressionError(f"{self.source!r} failed: {type(exc).__name__}: {exc}") from exc


def compile_expression(source: str) -> Expression:
    """Parse ``source`` and compile it, or raise :class:`ExpressionError` saying what is not allowed."""
    try:
        tree = ast.parse(source.strip(), mode="eval")
    except SyntaxError as exc:
        raise ExpressionError(f"{source!r} is not a valid expression: {exc.msg}") from exc
    names: set[str] = set()
    members: set[str] = set()
    evaluate = _compile(tree.body, source, names, members)
    return Expression(source, frozenset(names), frozenset(members), evaluate)


def _compile(node: ast.AST, source: str, names: set[str], members: set[str]) -> Evaluator:
    def sub(child: ast.AST) -> Evaluator:
        return _compile(child, source, names, members)

    match node:
        case ast.Constant(value=value) if isinstance(value, str | int | float | bool) or value is None:
            return lambda _s: value
        case ast.Name(id=name) if name in _CONSTANTS:
            constant = _CONSTANTS[name]
            return lambda _s: constant
        case ast.Name(id=name):
            names.add(name)
            members.add(name)
            return lambda s: s[name]
        case (
            ast.Attribute(value=ast.Name(id=base), attr=field_name)
            | ast.Subscript(value=ast.Name(id=base), slice=ast.Constant(value=str() as field_name))
        ) if base not in _CONSTANTS:
            names.add(base)
            members.add(f"{base}.{field_name}")
            return lambda s: s[base][field_name]
        case ast.BoolOp(op=ast.And(), values=values):
            parts = [sub(v) for v in values]
            return lambda s: all(p(s) for p in parts)
        case ast.BoolOp(op=ast.Or(), values=values):
            parts = [sub(v) for v in values]
            return lambda s: any(p(s) for p in parts)
        case ast.UnaryOp(op=ast.Not(), operand=operand):
            inner = sub(operand)
            return lambda s: not inner(s)
        case ast.UnaryOp(op=ast.USub(), operand=operand):
            inner = sub(operand)
            return lambda s: -inner(s)
        case ast.Compare(left=left, ops=ops, comparators=comparators):
            first = sub(left)
            steps = [(_COMPARE[type(op)], sub(c)) for op, c in zip(ops, comparators, strict=True)]

            def compare(s: Mapping[str, Any]) -> bool:
                current = first(s)
                for check, right in steps:
                    value = right(s)
                    if not check(current, value):
                        return False
                    current = value
                return True

            return compare
        case ast.IfExp(test=test, body=body, orelse=orelse):
            check, chosen, other = sub(test), sub(body), sub(orelse)
            return lambda s: chosen(s) if check(s) else other(s)
        case ast.BinOp(left=left, op=op, right=right) if type(op) in _BINARY:
            apply, lhs, rhs = _BINARY[type(op)], sub(left), sub(right)
            return lambda s: apply(lhs(s), rhs(s))
        case ast.Attribute(value=value, attr=attr):
            target = sub(value)
            return lambda s: target(s)[attr]
        case ast.Subscript(value=value, slice=index):
            target, key = sub(value), sub(index)
            return lambda s: target(s)[key(s)]
        case ast.List(elts=elts) | ast.Tuple(elts=elts):
            items = [sub(e) for e in elts]
            return lambda s: [i(s) for i in items]
        case ast.Dict(keys=keys, values=values) if all(k is not None for k in keys):
            pairs = [(sub(k), sub(v)) for k, v in zip(keys, values, strict=True) if k is not None]
            return lambda s: {k(s): v(s) for k, v in pairs}
        case ast.Call(func=ast.Name(id=fname), args=args, keywords=[]) if fname in _FUNCTIONS:
            fn, params = _FUNCTIONS[fname], [sub(a) for a in args]
            return lambda s: fn(*(p(s) for p in params))
        case ast.Call(func=ast.Name(id=fname)):
            allowed = ", ".join(sorted(_FUNCTIONS))
            raise ExpressionError(f"{source!r} calls {fname}(), which is not allowed (allowed: {allowed})")
    snippet = ast.get_source_segment(source.strip(), node) or type(node).__name__
    raise ExpressionError(f"{source!r}: '{snippet}' is not allowed in an expression")
