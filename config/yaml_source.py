"""Read a YAML file into plain data plus the line of every key, for error messages."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from config.errors import Problem

# A location path inside a document: mapping keys (str) and sequence indexes (int).
Loc = tuple[str | int, ...]


# libyaml's parser when PyYAML has it (about 10x faster on big nodes.yaml files); both
# give the same nodes, marks and safe types.
_Loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


@dataclass
class YamlSource:
    """A parsed YAML document that remembers where each key and item was written."""

    path: Path
    data: Any
    lines: dict[Loc, int] = field(default_factory=dict)

    def line_of(self, loc: Loc) -> int:
        """The line of `loc`, or of its closest written ancestor (a missing key points at
        the mapping that should hold it)."""
        while loc:
            if loc in self.lines:
                return self.lines[loc]
            loc = loc[:-1]
        return self.lines.get((), 1)


def load_yaml(path: Path, display: str) -> tuple[YamlSource | None, list[Problem]]:
    """Parse `path`; on failure return the problems (missing file, syntax error) instead."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None, [Problem(display, None, "", "file not found (copy one from examples/ to start)")]
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        return None, [Problem(display, None, "", f"cannot read file: {reason}")]

    loader = _Loader(text)
    try:
        node = loader.get_single_node()
        data = loader.construct_document(node) if node is not None else None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark else None
        col = f", column {mark.column + 1}" if mark else ""
        what = exc.problem or exc.context or "invalid YAML"
        return None, [Problem(display, line, "", f"YAML syntax error{col}: {what}")]
    except yaml.YAMLError as exc:
        return None, [Problem(display, None, "", f"YAML error: {exc}")]
    finally:
        loader.dispose()

    src = YamlSource(path=path, data=data)
    problems: list[Problem] = []
    if node is not None:
        src.lines[()] = node.start_mark.line + 1
        _record_lines(node, (), src.lines, display, problems)
    return src, problems


def _record_lines(
    node: yaml.Node, loc: Loc, lines: dict[Loc, int], display: str, problems: list[Problem]
) -> None:
    if isinstance(node, yaml.MappingNode):
        seen: set[str] = set()
        for key_node, value_node in node.value:
            key = key_node.value if isinstance(key_node, yaml.ScalarNode) else str(key_node)
            child = (*loc, key)
            line = key_node.start_mark.line + 1
            if key in seen:
                # PyYAML silently keeps the last one; a duplicate key is almost always a mistake.
                dotted = ".".join(str(p) for p in child)
                problems.append(Problem(display, line, dotted, "duplicate key (each key once)"))
            seen.add(key)
            lines[child] = line
            _record_lines(value_node, child, lines, display, problems)
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            child = (*loc, index)
            lines[child] = item.start_mark.line + 1
            _record_lines(item, child, lines, display, problems)
