"""Read a YAML file into plain data plus the line of every key, for error messages.

Reading is bounded and literal, because the files come from people (and from copy and
paste): a size limit, regular files only, a depth limit, a bound on what aliases expand
to, no explicit tags, no control characters. Plain scalars are read by the YAML 1.2 core
schema (`1:30` is text, `true`/`false` are the only booleans). Forms that YAML 1.1 tools
(PyYAML, the rest of a cluster's tooling) read differently, such as `0700` (octal 448
there) or `1:30` (90 there), become `Ambiguous`: no field accepts them, so a key of ours
written that way is an error with a hint, while keys of other tools stay untouched.

libyaml's parser gives the events (it is fast, its messages never quote the input and it
bounds nesting itself); composing and constructing are ours, so that none of the above
depends on PyYAML's YAML 1.1 resolver and constructor.
"""

from __future__ import annotations

import os
import re
import stat
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from config.errors import Problem, show_key

# A location path inside a document: mapping keys (str) and sequence indexes (int).
Loc = tuple[str | int, ...]

MAX_FILE_BYTES = 5 * 1024 * 1024  # a nodes.yaml of 10,000 nodes is about 2 MiB
_TOO_BIG = f"larger than the limit of {MAX_FILE_BYTES // (1024 * 1024)} MiB (expected a config file)"
MAX_DEPTH = 64  # our files nest 4 levels deep
# Values that aliases may add beyond the ones written: merge keys in every node of a big
# nodes.yaml stay well inside, an alias bomb (9 aliases of 9 aliases of ...) is cut early.
ALIAS_VALUES_PER_WRITTEN = 2
ALIAS_VALUES_EXTRA = 10_000

_Parser = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # only its parser (events) is used

# YAML forbids these (C0 controls but tab and line breaks, DEL, C1 but NEL, surrogates,
# U+FFFE/U+FFFF); found before parsing so the line is known and nothing is quoted.
_CONTROL = re.compile("[^\t\n\r\x20-\x7e\x85\xa0-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")

_NULL = frozenset({"", "~", "null", "Null", "NULL"})
_TRUE = frozenset({"true", "True", "TRUE"})
_FALSE = frozenset({"false", "False", "FALSE"})
_INT = re.compile(r"[-+]?[0-9]+")
_HEX = re.compile(r"0x[0-9a-fA-F]+")
_FLOAT = re.compile(r"[-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?")
_INF = re.compile(r"[-+]?\.(inf|Inf|INF)")
_NAN = re.compile(r"\.(nan|NaN|NAN)")
_MAX_DIGITS = 64
_TOO_LONG = "no key here takes a number this long (quote it for text)"

# Plain scalars that YAML 1.1 and YAML 1.2 read differently, with what to write instead.
_AMBIGUOUS: tuple[tuple[re.Pattern[str], str], ...] = (
    (
        # Not y/n: PyYAML and YAML 1.2 both read those as text (a node may be named `n`).
        re.compile(r"yes|Yes|YES|no|No|NO|on|On|ON|off|Off|OFF"),
        "YAML 1.1 reads it as true/false: write true or false, or quote it for text",
    ),
    (
        re.compile(r"[-+]?0[0-9_]+"),
        "a leading zero makes it octal in YAML 1.1 (0700 is 448): write it without "
        "the leading zero, or quote it for text",
    ),
    (
        re.compile(r"[-+]?0[ob][0-9a-fA-F_]+"),
        "YAML 1.1 and 1.2 read 0o/0b numbers differently: write a decimal number, or quote it for text",
    ),
    (
        re.compile(r"[-+]?[0-9][0-9_]*(:[0-5]?[0-9])+(\.[0-9_]*)?"),
        "YAML 1.1 reads it as a base-60 number (1:30 is 90): write a plain number, "
        "or quote it for text (a MAC address, a time)",
    ),
    (
        re.compile(r"[-+]?[0-9][0-9_]*_[0-9_]*(\.[0-9_]*)?"),
        "YAML 1.1 ignores the '_' in numbers: write plain digits, or quote it for text",
    ),
    (
        re.compile(r"[-+]?([0-9]+(\.[0-9]*)?|\.[0-9]+)[eE][-+]?[0-9]+"),
        "YAML 1.2 reads it as a number, YAML 1.1 often as text: write the number out, or quote it for text",
    ),
    (
        re.compile(r"[0-9]{4}-[0-9]{1,2}-[0-9]{1,2}([Tt ].*)?"),
        "YAML 1.1 reads it as a date: quote it",
    ),
)


@dataclass(frozen=True)
class Ambiguous:
    """A plain scalar that YAML 1.1 and 1.2 read differently: no field accepts it."""

    text: str
    hint: str


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


class _Bad(Exception):
    """One problem that stops reading the file."""

    def __init__(self, line: int | None, message: str) -> None:
        super().__init__(message)
        self.line = line
        self.message = message


def load_yaml(
    path: Path, display: str, secret_keys: tuple[str, ...] = ()
) -> tuple[YamlSource | None, list[Problem]]:
    """Parse `path`; on failure return the problems instead (one line each). A problem on
    the line of one of `secret_keys` says how to write a secret (never what it holds)."""
    text = ""
    try:
        text = read_config_text(path)
        _refuse_control_characters(text)
        root = _compose(text)
        src = YamlSource(path=path, data=None)
        problems: list[Problem] = []
        if root is not None:
            builder = _Builder(src.lines, display, problems, written=root.count)
            src.lines[()] = root.line
            src.data = builder.build(root, (), 0)
    except _Bad as bad:
        message = bad.message
        if bad.line is not None and secret_keys:
            own = text.splitlines()[bad.line - 1 : bad.line]
            key = re.match(r"\s*(?:-\s+)?[\"']?([A-Za-z_]+)", own[0]) if own else None
            if key and key.group(1) in secret_keys:
                message += f" (on the line of {key.group(1)}: write the secret in double quotes)"
        return None, [Problem(display, bad.line, "", message)]
    return src, problems


def read_config_text(path: Path) -> str:
    """The file's text: a regular file of at most MAX_FILE_BYTES, in UTF-8. Opened
    non-blocking and checked before reading, so a FIFO or a device (/dev/zero) is
    refused at once instead of hanging or filling memory."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | getattr(os, "O_CLOEXEC", 0))
    except FileNotFoundError:
        raise _Bad(None, "file not found (copy one from examples/ to start)") from None
    except OSError as exc:
        raise _Bad(None, f"cannot read file: {exc.strerror or exc}") from None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            if stat.S_ISDIR(info.st_mode):
                raise _Bad(None, "a directory (expected a YAML file)")
            raise _Bad(None, "not a regular file (expected a YAML file, not a FIFO or device)")
        if info.st_size > MAX_FILE_BYTES:
            raise _Bad(None, _TOO_BIG)
        with os.fdopen(os.dup(fd), "rb") as stream:
            raw = stream.read(MAX_FILE_BYTES + 1)
    except OSError as exc:
        raise _Bad(None, f"cannot read file: {exc.strerror or exc}") from None
    finally:
        os.close(fd)
    if len(raw) > MAX_FILE_BYTES:  # it grew while we looked
        raise _Bad(None, _TOO_BIG)
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw.count(b"\n", 0, exc.start) + 1
        raise _Bad(line, "not UTF-8 text (expected a YAML file in UTF-8)") from None
    return text.removeprefix("\ufeff")


def _refuse_control_characters(text: str) -> None:
    bad = _CONTROL.search(text)
    if bad is not None:
        line = text.count("\n", 0, bad.start()) + 1
        column = bad.start() - (text.rfind("\n", 0, bad.start()) + 1) + 1
        # The character is not shown: it may be part of a secret.
        raise _Bad(line, f"control character in column {column} (YAML does not allow it; remove it)")


# --- composing: events -> nodes --------------------------------------------------------


class _Node:
    """A composed node: kind 's' (scalar), 'q' (sequence) or 'm' (mapping)."""

    __slots__ = ("count", "kind", "line", "open", "plain", "value")

    def __init__(self, kind: str, line: int, value: Any, plain: bool = False) -> None:
        self.kind = kind
        self.line = line
        self.value = value  # str, list[_Node], or list[tuple[_Node, _Node]]
        self.plain = plain  # a plain (unquoted, untagged) scalar
        self.open = kind != "s"  # a collection still being composed
        self.count = 1  # nodes in the document (set on the root)


def _tag_ok(tag: str | None, kind: str) -> bool:
    # `!` (non-specific) and the tag a node has anyway are harmless; anything else would
    # ask for a conversion we do not do, so it is refused rather than ignored.
    standard = {"s": "tag:yaml.org,2002:str", "q": "tag:yaml.org,2002:seq", "m": "tag:yaml.org,2002:map"}
    return tag is None or tag == "!" or tag == standard[kind]


def _compose(text: str) -> _Node | None:
    """The single document's root node (None for an empty file); iterative, so depth is
    bounded by MAX_DEPTH rather than by Python's stack."""
    parser = _Parser(text)
    try:
        return _compose_events(parser)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark else None
        col = f", column {mark.column + 1}" if mark else ""
        what = _unquote(exc.problem or exc.context or "invalid YAML")
        raise _Bad(line, f"YAML syntax error{col}: {what}") from None
    except yaml.YAMLError:
        raise _Bad(None, "not readable as YAML (expected a YAML file)") from None
    finally:
        parser.dispose()


def _unquote(message: str) -> str:
    # libyaml's messages never quote the input; PyYAML's pure-Python scanner does
    # ("found unknown escape character 'x'"), and that character may belong to a secret.
    return re.sub(r"\s*'[^']*'|\s*#x[0-9a-fA-F]+", "", message).strip()


def _compose_events(parser: Any) -> _Node | None:
    anchors: dict[str, _Node] = {}
    stack: list[_Node] = []  # open collections
    pending_key: list[_Node | None] = []  # per open mapping: a key waiting for its value
    root: _Node | None = None
    documents = 0
    count = 0

    def attach(node: _Node) -> None:
        nonlocal root
        if not stack:
            root = node
            return
        parent = stack[-1]
        if parent.kind == "q":
            parent.value.append(node)
        elif pending_key[-1] is None:
            pending_key[-1] = node
        else:
            parent.value.append((pending_key[-1], node))
            pending_key[-1] = None

    while True:
        event = parser.get_event()
        line = event.start_mark.line + 1
        if isinstance(event, yaml.StreamEndEvent):
            break
        if isinstance(event, yaml.DocumentStartEvent):
            documents += 1
            if documents > 1:
                raise _Bad(line, "a second YAML document (expected one document: remove the '---')")
        elif isinstance(event, yaml.AliasEvent):
            target = anchors.get(event.anchor or "")
            # The anchor's name is not shown: it may be a secret written without quotes.
            if target is None:
                raise _Bad(line, "alias (*name) to an anchor that is not defined above it")
            if target.open:
                raise _Bad(line, "recursive alias: it refers to a mapping or list that contains it")
            attach(target)
        elif isinstance(event, yaml.ScalarEvent | yaml.SequenceStartEvent | yaml.MappingStartEvent):
            count += 1
            if isinstance(event, yaml.ScalarEvent):
                plain = event.tag is None and bool(event.implicit[0])
                node = _Node("s", line, event.value, plain)
            else:
                node = _Node("q" if isinstance(event, yaml.SequenceStartEvent) else "m", line, [])
            if not _tag_ok(event.tag, node.kind):
                raise _Bad(line, "explicit YAML tag (tags are not read here: remove it, and quote text)")
            if event.anchor is not None:
                anchors[event.anchor] = node
            attach(node)
            if node.kind != "s":
                if len(stack) >= MAX_DEPTH:
                    raise _Bad(line, f"nested deeper than {MAX_DEPTH} levels (expected a config file)")
                stack.append(node)
                pending_key.append(None)
        elif isinstance(event, yaml.SequenceEndEvent | yaml.MappingEndEvent):
            stack.pop().open = False
            pending_key.pop()
    if root is not None:
        root.count = count
    return root


# --- constructing: nodes -> data, lines and problems -----------------------------------


def scalar_value(text: str, plain: bool) -> Any:
    """A scalar as the YAML 1.2 core schema reads it; quoted scalars are always text."""
    if not plain:
        return text
    if text in _NULL:
        return None
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    for pattern, hint in _AMBIGUOUS:
        if pattern.fullmatch(text):
            return Ambiguous(text, hint)
    if _INT.fullmatch(text):
        return int(text) if len(text) <= _MAX_DIGITS else Ambiguous(text, _TOO_LONG)
    if _HEX.fullmatch(text):
        return int(text, 16) if len(text) <= _MAX_DIGITS else Ambiguous(text, _TOO_LONG)
    if _FLOAT.fullmatch(text) and text not in (".", "+.", "-."):
        return float(text) if len(text) <= _MAX_DIGITS else Ambiguous(text, _TOO_LONG)
    if _INF.fullmatch(text):
        return float("-inf") if text.startswith("-") else float("inf")
    if _NAN.fullmatch(text):
        return float("nan")
    return text


class _Builder:
    """Builds plain data from composed nodes, recording the line of every key and item.
    Aliases are expanded, within a budget of values beyond those written."""

    def __init__(self, lines: dict[Loc, int], display: str, problems: list[Problem], written: int) -> None:
        self.lines = lines
        self.display = display
        self.problems = problems
        self.budget = written * (1 + ALIAS_VALUES_PER_WRITTEN) + ALIAS_VALUES_EXTRA

    def build(self, node: _Node, loc: Loc, depth: int) -> Any:
        self.budget -= 1
        if self.budget < 0:
            raise _Bad(node.line, "aliases expand to far more values than the file holds (an alias bomb?)")
        if depth > MAX_DEPTH:  # aliases can nest what was written at a legal depth
            raise _Bad(node.line, f"nested deeper than {MAX_DEPTH} levels (expected a config file)")
        if node.kind == "s":
            return scalar_value(node.value, node.plain)
        if node.kind == "q":
            items = []
            for index, item in enumerate(node.value):
                child = (*loc, index)
                self.lines[child] = item.line
                items.append(self.build(item, child, depth + 1))
            return items
        return self._mapping(node, loc, depth)

    def _mapping(self, node: _Node, loc: Loc, depth: int) -> dict[str, Any]:
        pairs = []
        merged: dict[str, Any] = {}
        for key_node, value_node in node.value:
            if key_node.kind != "s":
                raise _Bad(key_node.line, "a key must be text, not a list or mapping")
            if key_node.plain and key_node.value == "<<":
                merged.update(self._merge(value_node, loc, depth))
            else:
                pairs.append((key_node, value_node))
        # Keys written in the mapping come after the merged ones: their values and lines win.
        own: dict[str, Any] = {}
        for key_node, value_node in pairs:
            key = key_node.value
            child = (*loc, key)
            if key in own:
                # A duplicate key is almost always a mistake; YAML forbids it.
                dotted = ".".join(show_key(p) for p in child)
                problem = Problem(self.display, key_node.line, dotted, "duplicate key (each key once)")
                self.problems.append(problem)
            self.lines[child] = key_node.line
            own[key] = self.build(value_node, child, depth + 1)
        return {**merged, **own}

    def _merge(self, value: _Node, loc: Loc, depth: int) -> dict[str, Any]:
        """`<<: *defaults` or `<<: [*a, *b]`: of the merged mappings, the first that has a
        key wins, so they are built last to first (the lines recorded last win too)."""
        sources = value.value if value.kind == "q" else [value]
        merged: dict[str, Any] = {}
        for source in reversed(sources):
            if source.kind != "m":
                raise _Bad(value.line, "merge key '<<' takes a mapping or a list of them (such as *defaults)")
            merged.update(self.build(source, loc, depth + 1))
        return merged
