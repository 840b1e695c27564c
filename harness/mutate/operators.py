"""Mutation operators over a module's AST: where a mutant can be made, and making it.

A mutant is named by its module, line, column, operator and what it does (`<` -> `<=`), so the
same mutant has the same name in every run of an unchanged file. Mutants are found by walking a
fresh parse in `ast.walk` order and applied by walking another fresh parse the same way, so
nothing is shared between mutants and the source file itself is never written.

Operators: comparison flips (`<` <-> `<=`, `>` <-> `>=`, `==` <-> `!=`, `is` / `in` negated),
`and` <-> `or`, `not x` -> `x`, numeric constants n -> n + 1 and n -> 0, `True` <->
`False`, arithmetic `+` <-> `-`, `*` <-> `/`, `return x` -> `return None`, and a statement that
acts (a call, an augmented assignment, a `raise`) -> `pass`. Not mutated: docstrings, type
annotations, strings (event names and reasons are checked by the event schema, not here), and
decorators (`@dataclass(frozen=True, slots=True)`: how an object is stored, not what the bot does).
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from dataclasses import dataclass

_COMPARE_FLIPS: dict[type[ast.cmpop], type[ast.cmpop]] = {
    ast.Lt: ast.LtE, ast.LtE: ast.Lt, ast.Gt: ast.GtE, ast.GtE: ast.Gt,
    ast.Eq: ast.NotEq, ast.NotEq: ast.Eq, ast.Is: ast.IsNot, ast.IsNot: ast.Is,
    ast.In: ast.NotIn, ast.NotIn: ast.In,
}
_BINOP_SWAPS: dict[type[ast.operator], type[ast.operator]] = {
    ast.Add: ast.Sub, ast.Sub: ast.Add, ast.Mult: ast.Div, ast.Div: ast.Mult, ast.FloorDiv: ast.Mult,
}
_SYMBOLS: dict[type, str] = {
    ast.Lt: "<", ast.LtE: "<=", ast.Gt: ">", ast.GtE: ">=", ast.Eq: "==", ast.NotEq: "!=",
    ast.Is: "is", ast.IsNot: "is not", ast.In: "in", ast.NotIn: "not in",
    ast.Add: "+", ast.Sub: "-", ast.Mult: "*", ast.Div: "/", ast.FloorDiv: "//",
    ast.And: "and", ast.Or: "or",
}


@dataclass(frozen=True, slots=True)
class Mutant:
    module: str  # dotted name, e.g. bot.core.risk
    path: str  # file path relative to the project root
    index: int  # position of the mutated node in ast.walk order
    choice: int  # which of the node's mutations
    line: int
    col: int
    op: str  # operator family: compare, boolop, not, number, bool, arith, return, statement
    change: str  # what it does, e.g. "< -> <="
    source_line: str

    @property
    def name(self) -> str:
        return f"{self.path}:{self.line}:{self.col}:{self.op}:{self.change}"


def _skipped_nodes(tree: ast.AST) -> set[int]:
    """ids of nodes inside annotations and docstrings (never mutated)."""
    skipped: set[int] = set()

    def skip(node: ast.AST | None) -> None:
        if node is not None:
            skipped.update(id(n) for n in ast.walk(node))

    for node in ast.walk(tree):
        if isinstance(node, ast.AnnAssign):
            skip(node.annotation)
        elif isinstance(node, (ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            for decorator in node.decorator_list:
                skip(decorator)
        elif isinstance(node, ast.arg):
            skip(node.annotation)
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            skip(node.returns)
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)) and node.body:
            first = node.body[0]
            if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant) \
                    and isinstance(first.value.value, str):
                skip(first)
    return skipped


def _choices(node: ast.AST) -> list[tuple[str, str]]:
    """The (op, change) mutations one node offers, in a fixed order."""
    if isinstance(node, ast.Compare):
        return [("compare", f"{_SYMBOLS[type(o)]} -> {_SYMBOLS[_COMPARE_FLIPS[type(o)]]}")
                for o in node.ops if type(o) in _COMPARE_FLIPS]
    if isinstance(node, ast.BoolOp):
        other = ast.Or if isinstance(node.op, ast.And) else ast.And
        return [("boolop", f"{_SYMBOLS[type(node.op)]} -> {_SYMBOLS[other]}")]
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.Not):
        return [("not", "not x -> x")]
    if isinstance(node, ast.Constant):
        value = node.value
        if isinstance(value, bool):
            return [("bool", f"{value} -> {not value}")]
        if isinstance(value, (int, float)):
            if value == 0:
                return [("number", f"{value!r} -> {value + 1!r}")]
            return [("number", f"{value!r} -> {value + 1!r}"), ("number", f"{value!r} -> 0")]
        return []
    if isinstance(node, ast.AugAssign):
        swap = _BINOP_SWAPS.get(type(node.op))
        arith = [("arith", f"{_SYMBOLS[type(node.op)]}= -> {_SYMBOLS[swap]}=")] if swap else []
        return arith + [("statement", "x op= y -> pass")]
    if isinstance(node, ast.BinOp) and type(node.op) in _BINOP_SWAPS:
        return [("arith", f"{_SYMBOLS[type(node.op)]} -> {_SYMBOLS[_BINOP_SWAPS[type(node.op)]]}")]
    if isinstance(node, ast.Return) and node.value is not None and not (
            isinstance(node.value, ast.Constant) and node.value.value is None):
        return [("return", "return x -> return None")]
    if isinstance(node, ast.Expr) and isinstance(node.value, (ast.Call, ast.Await)):
        return [("statement", "call -> pass")]
    if isinstance(node, ast.Raise):
        return [("statement", "raise -> pass")]
    return []


def _statement_only(node: ast.AST) -> bool:
    return isinstance(node, (ast.Expr, ast.AugAssign, ast.Raise))


def find_mutants(module: str, path: str, source: str) -> list[Mutant]:
    tree = ast.parse(source)
    skipped = _skipped_nodes(tree)
    lines = source.splitlines()
    found: list[Mutant] = []
    for index, node in enumerate(ast.walk(tree)):
        if id(node) in skipped or not hasattr(node, "lineno"):
            continue
        for choice, (op, change) in enumerate(_choices(node)):
            line = node.lineno
            found.append(Mutant(module, path, index, choice, line, node.col_offset, op, change,
                                lines[line - 1].strip() if line <= len(lines) else ""))
    return found


class _Apply(ast.NodeTransformer):
    def __init__(self, targets: dict[int, int]) -> None:
        self.targets = targets  # id(node) -> choice

    def generic_visit(self, node: ast.AST) -> ast.AST:
        super().generic_visit(node)
        choice = self.targets.get(id(node))
        return node if choice is None else _mutated(node, choice)


def _mutated(node: ast.AST, choice: int) -> ast.AST:
    op, _ = _choices(node)[choice]
    if op == "statement" and _statement_only(node):
        return ast.copy_location(ast.Pass(), node)
    if isinstance(node, ast.Compare):
        flippable = [i for i, o in enumerate(node.ops) if type(o) in _COMPARE_FLIPS]
        at = flippable[choice]
        node.ops[at] = _COMPARE_FLIPS[type(node.ops[at])]()
    elif isinstance(node, ast.BoolOp):
        node.op = ast.Or() if isinstance(node.op, ast.And) else ast.And()
    elif isinstance(node, ast.UnaryOp):
        return node.operand
    elif isinstance(node, ast.Constant):
        value = node.value
        if isinstance(value, bool):
            node.value = not value
        else:
            node.value = value + 1 if choice == 0 else type(value)(0)
    elif isinstance(node, (ast.BinOp, ast.AugAssign)):
        node.op = _BINOP_SWAPS[type(node.op)]()
    elif isinstance(node, ast.Return):
        node.value = ast.copy_location(ast.Constant(None), node)
    return node


def mutated_tree(source: str, mutant: Mutant) -> ast.Module:
    """A fresh parse of `source` with `mutant` applied."""
    tree = ast.parse(source)
    for index, node in enumerate(ast.walk(tree)):
        if index == mutant.index:
            tree = _Apply({id(node): mutant.choice}).visit(tree)
            return ast.fix_missing_locations(tree)
    raise LookupError(f"{mutant.name}: the node is gone (the file changed since the mutants were listed)")


def iter_modules(paths: list[str]) -> Iterator[tuple[str, str]]:
    """(dotted module name, relative path) for each .py file under the given files/folders."""
    from pathlib import Path

    for raw in paths:
        root = Path(raw)
        files = sorted(root.rglob("*.py")) if root.is_dir() else [root]
        for f in files:
            parts = list(f.with_suffix("").parts)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            yield ".".join(parts), f.as_posix()
