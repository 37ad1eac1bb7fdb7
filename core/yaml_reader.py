"""YAML read within bounds: a config file, or a ``--set`` value, can never hang, exhaust or flood the reader.

A careless or hostile config must end as one ConfigError in well under a second:

* only a regular file is opened (``/dev/zero`` is endless, a FIFO blocks until someone writes);
* at most ``MAX_BYTES`` are read, whatever the file claims its size is (``/proc`` files say 0);
* nesting deeper than ``MAX_DEPTH`` is refused before Python's recursion limit is met (20,000 ``[``);
* the document, with every alias expanded, holds at most ``MAX_NODES`` nodes: a 500-byte "billion
  laughs" builds shared objects cheaply, but validating or printing them expands every alias;
* a key given twice in one mapping is refused instead of the last silently winning (merge keys,
  ``<<: *base``, still override as YAML means them to).
"""

from __future__ import annotations

import os
import reprlib
import stat
from pathlib import Path
from typing import Any

import yaml
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from .errors import ConfigError

#: A config is a page or two of YAML; a megabyte is far beyond any real one.
MAX_BYTES = 1 << 20
#: Real configs nest five or six levels (train.tta.transforms.0.params, say).
MAX_DEPTH = 64
#: Nodes of the document with every alias expanded; a real config has a few hundred.
MAX_NODES = 100_000

MERGE_TAG = "tag:yaml.org,2002:merge"


class _Refused(Exception):
    """A bound was crossed; the message says which (the caller adds the file's name)."""


class _BoundedLoader(yaml.SafeLoader):
    """PyYAML's safe loader with a nesting bound and duplicate keys refused."""

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self._depth = 0

    def compose_node(self, parent: Node | None, index: Any) -> Node:  # type: ignore[override]
        self._depth += 1
        try:
            if self._depth > MAX_DEPTH:
                mark = self.peek_event().start_mark
                raise _Refused(f"nests deeper than {MAX_DEPTH} levels at line {mark.line + 1}")
            return super().compose_node(parent, index)  # type: ignore[no-any-return]
        finally:
            self._depth -= 1

    def construct_mapping(self, node: Node, deep: bool = False) -> dict[Any, Any]:  # type: ignore[override]
        if isinstance(node, MappingNode):
            _refuse_duplicates(self, node)
        return super().construct_mapping(node, deep=deep)  # type: ignore[arg-type,no-any-return]


def _refuse_duplicates(loader: _BoundedLoader, node: MappingNode) -> None:
    """Raise when a key appears twice among the mapping's own keys (merged keys may be overridden)."""
    seen: dict[Any, int] = {}
    for key_node, _ in node.value:
        if key_node.tag == MERGE_TAG or not isinstance(key_node, ScalarNode):
            continue
        key = loader.construct_object(key_node)
        line = key_node.start_mark.line + 1
        if key in seen:
            raise _Refused(f"key {clip(key)} appears twice (lines {seen[key]} and {line}); keep one")
        seen[key] = line


def _expanded_size(root: Node) -> int:
    """Nodes in ``root`` with every alias expanded, computed once per distinct node; raises past a bound."""
    sizes: dict[int, int] = {}
    open_nodes: set[int] = set()

    def size(node: Node, depth: int) -> int:
        key = id(node)
        if key in sizes:
            return sizes[key]
        if key in open_nodes:
            raise _Refused("an alias refers to a node that contains it; a config cannot be recursive")
        if depth > MAX_DEPTH:
            raise _Refused(f"nests deeper than {MAX_DEPTH} levels once its aliases are expanded")
        open_nodes.add(key)
        if isinstance(node, SequenceNode):
            total = 1 + sum(size(child, depth + 1) for child in node.value)
        elif isinstance(node, MappingNode):
            total = 1 + sum(size(k, depth + 1) + size(v, depth + 1) for k, v in node.value)
        else:
            total = 1
        open_nodes.discard(key)
        if total > MAX_NODES:
            raise _Refused(f"expands its aliases (*name) to more than {MAX_NODES:,} values; write the values out")
        sizes[key] = total
        return total

    return size(root, 0)


def safe_load(text: str, source: str) -> Any:
    """The YAML value in ``text``, within the bounds above; a ConfigError naming ``source`` otherwise."""
    loader = _BoundedLoader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        _expanded_size(node)
        return loader.construct_document(node)
    except _Refused as exc:
        raise ConfigError(f"{source} {exc}") from None
    except RecursionError:  # a bound above should come first; this is the last line of defence
        raise ConfigError(f"{source} nests too deeply to read") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise ConfigError(f"{source} is not valid YAML{where}: {getattr(exc, 'problem', exc)}") from None
    finally:
        loader.dispose()


def read_text(path: Path) -> str:
    """The text of a regular file of at most ``MAX_BYTES``; a ConfigError naming the file otherwise."""
    try:
        info = os.stat(path)
    except FileNotFoundError:
        raise ConfigError(f"config file {path} does not exist; pass the path to a YAML config") from None
    except OSError as exc:
        raise ConfigError(f"cannot read config file {path}: {exc.strerror or exc}") from None
    if stat.S_ISDIR(info.st_mode):
        raise ConfigError(f"{path} is a directory; pass the path to a YAML config file")
    if not stat.S_ISREG(info.st_mode):
        raise ConfigError(f"{path} is not a regular file (a device, pipe or socket); pass a YAML config file")
    try:
        # O_NONBLOCK: should the path turn into a FIFO after the check above, open() still returns.
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
        with os.fdopen(fd, "rb") as handle:
            if not stat.S_ISREG(os.fstat(handle.fileno()).st_mode):
                raise ConfigError(f"{path} is not a regular file; pass a YAML config file")
            data = handle.read(MAX_BYTES + 1)
    except OSError as exc:
        raise ConfigError(f"cannot read config file {path}: {exc.strerror or exc}") from None
    if len(data) > MAX_BYTES:
        raise ConfigError(f"config file {path} is larger than {MAX_BYTES // 1024} KiB; a config is a page of YAML")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        reason = f"not utf-8 text ({exc.reason} at byte {exc.start})"
        raise ConfigError(f"cannot read config file {path}: {reason}") from None


_SHORT = reprlib.Repr()
_SHORT.maxlevel, _SHORT.maxlist, _SHORT.maxdict = 3, 4, 4
_SHORT.maxstring, _SHORT.maxother, _SHORT.maxlong = 50, 50, 40


def clip(value: Any, limit: int = 60) -> str:
    """``repr(value)`` cut to ``limit`` characters: input quoted in a message never floods the terminal.

    reprlib stops at a few items per level, so even a value sharing one list a million times costs little.
    """
    text = _SHORT.repr(value)
    return text if len(text) <= limit else f"{text[: limit - 5]}...{text[-2:]}"


def counted(n: int, noun: str) -> str:
    """``n`` and ``noun`` for a message: "1 missing value", "3 missing values"."""
    return f"{n} {noun}{'s' * (n != 1)}"
