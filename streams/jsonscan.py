"""A position-aware reading of one JSON message, for decoding it item by item.

``scan`` reads the top-level value with Python's strict JSON scanner; for an
envelope ``{"events": [...]}`` it reads the items one by one, so each item's
character span is known (a dead letter can carry the client's own bytes of
that item), and a duplicate key anywhere is flagged per item (``Reader``).
Raises ``Malformed`` (with a reason code), ``ValueError`` (JSON syntax) or
``RecursionError``; streams/decode.py turns each into a dead letter.
"""

from __future__ import annotations

import json
import re
from json.decoder import scanstring
from typing import Any

_WS = re.compile(r"[ \t\n\r]*")


class Reader:
    """Python's strict JSON scanner, with a flag for duplicate keys at any depth."""

    def __init__(self) -> None:
        self.duplicate = False
        self._decoder = json.JSONDecoder(object_pairs_hook=self._pairs)

    def _pairs(self, pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        out = dict(pairs)
        if len(out) != len(pairs):
            self.duplicate = True
        return out

    def value(self, text: str, pos: int) -> tuple[Any, int]:
        return self._decoder.raw_decode(text, pos)


class Item:
    __slots__ = ("value", "span", "duplicate")

    def __init__(self, value: Any, span: tuple[int, int], duplicate: bool) -> None:
        self.value, self.span, self.duplicate = value, span, duplicate


class Malformed(Exception):
    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.reason, self.detail = reason, detail


def _ws(text: str, pos: int) -> int:
    return _WS.match(text, pos).end()  # type: ignore[union-attr]  # always matches


def _expect(text: str, pos: int, char: str) -> int:
    if text[pos:pos + 1] != char:
        raise Malformed("bad_json", f"expected {char!r} at char {pos}")
    return pos + 1


def scan(text: str, reader: Reader) -> tuple[list[Item] | None, Item | None]:
    """Read the message: (envelope items, None) for ``{"events": [...]}``, or
    (None, the whole message as one item). Raises ``Malformed``."""
    pos = _ws(text, 0)
    if text[pos:pos + 1] != "{":
        start = pos
        value, pos = reader.value(text, pos)
        _end(text, pos)
        return None, Item(value, (start, pos), reader.duplicate)
    start = pos
    pos = _ws(text, pos + 1)
    members: dict[str, Any] = {}
    items: list[Item] | None = None
    duplicate = False
    if text[pos:pos + 1] == "}":
        pos += 1
    else:
        while True:
            pos = _expect(text, pos, '"')
            key, pos = scanstring(text, pos, True)
            pos = _ws(text, _expect(text, _ws(text, pos), ":"))
            if key in members:
                duplicate = True
            if key == "events" and text[pos:pos + 1] == "[" and items is None:
                items, pos = _scan_items(text, pos, reader)
                members[key] = items
            else:
                reader.duplicate = False
                members[key], pos = reader.value(text, pos)
                duplicate |= reader.duplicate
            pos = _ws(text, pos)
            if text[pos:pos + 1] == ",":
                pos = _ws(text, pos + 1)
                continue
            pos = _expect(text, pos, "}")
            break
    _end(text, pos)
    if "events" not in members:
        return None, Item(members, (start, pos), duplicate)
    if duplicate:
        raise Malformed("duplicate_key", "a key appears twice in the envelope object")
    if not isinstance(members["events"], list):
        raise Malformed("bad_envelope", "`events` must be a list of event objects")
    return items if items is not None else [], None


def _scan_items(text: str, pos: int, reader: Reader) -> tuple[list[Item], int]:
    items: list[Item] = []
    pos = _ws(text, pos + 1)
    if text[pos:pos + 1] == "]":
        return items, pos + 1
    while True:
        reader.duplicate = False
        start = pos
        value, pos = reader.value(text, pos)
        items.append(Item(value, (start, pos), reader.duplicate))
        pos = _ws(text, pos)
        if text[pos:pos + 1] == ",":
            pos = _ws(text, pos + 1)
            continue
        return items, _expect(text, pos, "]")


def _end(text: str, pos: int) -> None:
    if _ws(text, pos) != len(text):
        raise Malformed("bad_json", f"extra data after the JSON value at char {pos}")
