"""Problems named by file:line, and YAML parsed so that every value keeps its line."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import yaml

from harness.scenario.values import Duration, PolicyRef

_MISSING: Any = object()


@dataclass(frozen=True)
class Problem:
    file: str
    line: int
    key: str
    what: str
    got: Any = _MISSING
    allowed: str | None = None

    def __str__(self) -> str:
        detail = []
        if self.got is not _MISSING:
            detail.append(f"got {_show(self.got)}")
        if self.allowed:
            detail.append(f"allowed: {self.allowed}")
        tail = f" ({'; '.join(detail)})" if detail else ""
        key = f"{self.key}: " if self.key else ""
        return f"{self.file}:{self.line}: {key}{self.what}{tail}"


class ScenarioError(Exception):
    """One or more problems in a scenario file; str() is one `file:line: ...` line per problem."""

    def __init__(self, problems: list[Problem]) -> None:
        super().__init__("\n".join(str(p) for p in problems))
        self.problems = problems


def _show(value: Any) -> str:
    if isinstance(value, Duration | PolicyRef):
        return str(value)
    if isinstance(value, LMap):
        value = dict(value)
    elif isinstance(value, LList):
        value = list(value)
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


# --------------------------------------------------------------------------------------------
# YAML with line numbers
# --------------------------------------------------------------------------------------------


class LMap(dict[Any, Any]):
    """A YAML mapping that remembers where it and each of its keys/values start (1-based)."""

    line: int = 1
    key_lines: dict[Any, int]
    value_lines: dict[Any, int]


class LList(list[Any]):
    line: int = 1
    item_lines: list[int]


# libyaml's parser where PyYAML was built with it: the catalog parses in about a ninth of the time
_SafeBase: type[yaml.SafeLoader] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class _LineLoader(_SafeBase):  # type: ignore[misc,valid-type]
    pass


def _construct_map(loader: _LineLoader, node: yaml.MappingNode) -> LMap:
    loader.flatten_mapping(node)
    out = LMap()
    out.line = node.start_mark.line + 1
    out.key_lines, out.value_lines = {}, {}
    for key_node, value_node in node.value:
        key = loader.construct_object(key_node, deep=True)
        line = key_node.start_mark.line + 1
        try:
            hash(key)
        except TypeError:
            raise yaml.constructor.ConstructorError(
                None, None, "a mapping key must be a plain value", key_node.start_mark) from None
        if key in out:
            raise yaml.constructor.ConstructorError(
                None, None, f"duplicate key {key!r} (first at line {out.key_lines[key]})",
                key_node.start_mark)
        out[key] = loader.construct_object(value_node, deep=True)
        out.key_lines[key] = line
        out.value_lines[key] = value_node.start_mark.line + 1
    return out


def _construct_seq(loader: _LineLoader, node: yaml.SequenceNode) -> LList:
    out = LList(loader.construct_object(child, deep=True) for child in node.value)
    out.line = node.start_mark.line + 1
    out.item_lines = [child.start_mark.line + 1 for child in node.value]
    return out


_LineLoader.add_constructor("tag:yaml.org,2002:map", _construct_map)
_LineLoader.add_constructor("tag:yaml.org,2002:seq", _construct_seq)


def parse_yaml(text: str, file: str) -> Any:
    try:
        return yaml.load(text, Loader=_LineLoader)  # nosec B506 - _LineLoader is a (C)SafeLoader subclass
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark else 1
        what = " ".join(p for p in (exc.context, exc.problem) if p)
        raise ScenarioError([Problem(file, line, "", f"invalid YAML: {what}")]) from None
    except yaml.YAMLError as exc:
        raise ScenarioError([Problem(file, 1, "", f"invalid YAML: {exc}")]) from None
