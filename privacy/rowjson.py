"""Many JSON records written at once from columns: floats as ``json.dumps`` writes them,
and rows spliced from constant text, per-row pieces and number arrays by one C pass.

  # float64[n] -> float_array_json: "[a,b,...]" (msgspec's digits, repr's notation)
  # RowWriter: text | each (n pieces) | floats (float64[n]) ... -> rows(): list[bytes]

A window of 100k public cells releases ~100 MB of records, each a few constant
pieces around ~12 numbers. Built in Python (f-strings, joins, encode) every record
was copied several times: ~8 µs a record, half a 100k-cell release's time. Here the
numbers of each column are encoded in one msgspec call and ``_rows.splice``
(privacy/_rows.c) writes each record once, into its own bytes object. The bytes are
those the per-value code writes (tests/privacy/test_rowjson.py, test_columns.py).
"""

from __future__ import annotations

import math

import msgspec
import numpy as np

from privmon.privacy import _rows

_SPECIAL = {math.inf: "Infinity", -math.inf: "-Infinity"}
_ENCODER = msgspec.json.Encoder()
_TEXT, _EACH, _ARRAY = 0, 1, 2  # the kinds of _rows.splice's parts


def _not_plain(values: np.ndarray) -> np.ndarray:
    """Where msgspec's notation differs from repr's: outside [1e-4, 1e16) but 0, and
    NaN and the infinities (msgspec writes null)."""
    with np.errstate(invalid="ignore"):
        size = np.abs(values)
        plain = ((size >= 1e-4) & (size < 1e16)) | (values == 0)
    return np.flatnonzero(~plain)


def float_json(values: np.ndarray) -> list[str]:
    """Each float as ``json.dumps`` writes it (repr; NaN, Infinity, -Infinity).

    msgspec's C encoder writes a list of floats ~3x faster than ``repr`` one by one,
    with the same shortest round-trip digits; the two notations differ only where
    repr switches to an exponent (below 1e-4, from 1e16) and for NaN and the
    infinities (msgspec: null), and those values alone take repr's path
    (tests/privacy/test_columns.py compares the two on millions of values)."""
    floats = values.tolist()
    if not floats:
        return []
    texts = _ENCODER.encode(floats).decode()[1:-1].split(",")
    for i in _not_plain(values).tolist():
        v = floats[i]
        texts[i] = "NaN" if v != v else _SPECIAL.get(v) or repr(v)
    return texts


def float_array_json(values: np.ndarray) -> bytes:
    """The floats as one JSON array, each as ``json.dumps`` writes it (compact)."""
    values = np.asarray(values, np.float64)
    if _not_plain(values).size:  # (few windows: repr's notation for those values)
        return ("[" + ",".join(float_json(values)) + "]").encode()
    return _ENCODER.encode(values.tolist())


class RowWriter:
    """n rows written part after part, the same parts in every row."""

    def __init__(self, n: int) -> None:
        self.n = n
        self._parts: list[tuple[int, bytes | list[bytes]]] = []

    def text(self, text: str | bytes) -> None:
        """The same text in every row."""
        piece = text.encode() if isinstance(text, str) else text
        if self._parts and self._parts[-1][0] == _TEXT:  # (one piece: one copy a row)
            piece = self._parts.pop()[1] + piece  # type: ignore[operator]
        self._parts.append((_TEXT, piece))

    def each(self, pieces: list[bytes]) -> None:
        """Row i gets ``pieces[i]``."""
        if len(pieces) != self.n:
            raise ValueError(f"RowWriter.each: expected {self.n} pieces, got {len(pieces)}")
        self._parts.append((_EACH, pieces))

    def floats(self, values: np.ndarray) -> None:
        """Row i gets ``values[i]`` as ``json.dumps`` writes it."""
        if len(values) != self.n:
            raise ValueError(f"RowWriter.floats: expected {self.n} values, got {len(values)}")
        self._parts.append((_ARRAY, float_array_json(values)))

    def rows(self) -> list[bytes]:
        return _rows.splice(self.n, self._parts)
