"""Rows spliced by privacy/_rows.c equal the rows Python's own joins give, and any
input the splice does not describe raises (TypeError or ValueError, naming the part)
rather than writing something else.

The release records' bytes are checked end to end against ``ReleaseRecord.to_json``
in tests/privacy/test_columns.py; here the parts themselves: any text (commas,
brackets, non-ASCII, empty), any float64 (NaN, infinities, subnormals, exponents),
any row count, and hostile arrays of numbers.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from privmon.privacy import _rows
from privmon.privacy.rowjson import RowWriter, float_array_json, float_json

floats64 = st.floats(width=64)  # NaN, +-inf, subnormals and every exponent too


def _json(v: float) -> bytes:
    return json.dumps(v).encode()


@settings(max_examples=300, deadline=None)
@given(values=st.lists(floats64, max_size=40))
def test_float_array_json_is_the_array_json_dumps_writes(values):
    got = float_array_json(np.array(values, np.float64))
    assert got == json.dumps(values, separators=(",", ":")).encode()
    assert float_json(np.array(values, np.float64)) == [json.dumps(v) for v in values]


# one part: ("text", bytes) | ("each", [bytes] * n) | ("floats", [float] * n)
def _part(n: int) -> st.SearchStrategy:
    texts = st.one_of(st.binary(max_size=12), st.text(max_size=8).map(str.encode))
    return st.one_of(
        texts.map(lambda t: ("text", t)),
        st.lists(texts, min_size=n, max_size=n).map(lambda xs: ("each", xs)),
        st.lists(floats64, min_size=n, max_size=n).map(lambda xs: ("floats", xs)),
    )


@settings(max_examples=400, deadline=None)
@given(data=st.data(), n=st.integers(0, 30))
def test_rows_are_the_parts_joined_row_by_row(data, n):
    parts = data.draw(st.lists(_part(n), max_size=10))
    out = RowWriter(n)
    for kind, value in parts:
        if kind == "text":
            out.text(value)
        elif kind == "each":
            out.each(value)
        else:
            out.floats(np.array(value, np.float64))
    expected = [b"".join(value if kind == "text" else
                         value[i] if kind == "each" else _json(value[i])
                         for kind, value in parts) for i in range(n)]
    assert out.rows() == expected


def test_text_parts_in_a_row_are_written_once_as_one():
    out = RowWriter(2)
    out.text("a")
    out.text(b"b")
    out.floats(np.array([1.0, 0.5]))
    out.text("c")
    assert out.rows() == [b"ab1.0c", b"ab0.5c"]
    assert len(out._parts) == 3


@pytest.mark.parametrize("n, parts, error, words", [
    (-1, [], ValueError, "n: expected rows >= 0, got -1"),
    (1, [b"x"], TypeError, "part 0: expected a (kind, object) tuple, got bytes"),
    (1, [(0, b"x", 1)], TypeError, "part 0: expected a (kind, object) tuple"),
    (1, [(3, b"x")], ValueError, "expected kind 0 (text), 1 (per row) or 2"),
    (1, [(-1, b"x")], ValueError, "got -1"),
    (1, [(0, "x")], TypeError, "part 0 (kind 0): expected bytes, got str"),
    (2, [(0, b""), (1, [b"a"])], ValueError, "part 1 (kind 1): expected a list of 2 bytes, "
                                             "got list of 1"),
    (1, [(1, (b"a",))], ValueError, "expected a list of 1 bytes, got tuple"),
    (2, [(1, [b"a", "b"])], TypeError, "item 1: expected bytes, got str"),
    (2, [(2, b"[1,2,3]")], ValueError, "expected 2 numbers, got more"),
    (3, [(2, b"[1,2]")], ValueError, "expected 3 numbers, got 2"),
    (2, [(2, b"[1,,2]")], ValueError, "got an empty one"),
    (2, [(2, b"[,1]")], ValueError, "got an empty one"),
    (2, [(2, b"[1,]")], ValueError, "(the last one empty)"),
    (1, [(2, b"[]")], ValueError, "(the last one empty)"),
    (0, [(2, b"[1]")], ValueError, "expected an empty array for 0 rows"),
    (1, [(2, b"1")], ValueError, "not in brackets"),
    (1, [(2, b"[")], ValueError, "not in brackets"),
    (1, [(2, b'["a"]')], ValueError, "got byte 0x22 at 1"),
    (2, [(2, b"[1, 2]")], ValueError, "got byte 0x20 at 3"),
    (1, [(2, b"[[1]]")], ValueError, "got byte 0x5b at 1"),
])
def test_what_the_splice_does_not_describe_raises_naming_it(n, parts, error, words):
    with pytest.raises(error) as raised:
        _rows.splice(n, parts)
    assert words in str(raised.value)


def test_a_splice_of_no_parts_or_no_rows_is_empty_rows():
    assert _rows.splice(3, []) == [b"", b"", b""]
    assert _rows.splice(0, [(0, b"x"), (2, b"[]"), (1, [])]) == []
    with pytest.raises(TypeError):
        _rows.splice(1, ((0, b"x"),))  # parts: a list, not a tuple


@settings(max_examples=1000, deadline=None)
@given(n=st.integers(0, 6), array=st.binary(max_size=24),
       noise=st.sampled_from([b"", b"[", b"]", b",", b"1", b"[1,2]"]))
def test_any_bytes_as_an_array_give_its_numbers_or_raise(n, array, noise):
    """The splice's reading of an array, against Python's: between the brackets,
    n non-empty comma-separated runs of number characters; anything else raises."""
    raw = noise + array
    inner = raw[1:-1]
    numeric = set(b"0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ.+-,")
    fields = inner.split(b",")
    ok = (len(raw) >= 2 and raw[:1] == b"[" and raw[-1:] == b"]"
          and set(inner) <= numeric
          and (fields == [b""] if n == 0 else len(fields) == n and all(fields)))
    if ok:
        assert _rows.splice(n, [(0, b"<"), (2, raw), (0, b">")]) == [
            b"<" + f + b">" for f in (fields if n else [])]
    else:
        with pytest.raises(ValueError):
            _rows.splice(n, [(0, b"<"), (2, raw), (0, b">")])


def test_the_writer_refuses_a_column_of_another_length():
    out = RowWriter(2)
    with pytest.raises(ValueError, match="RowWriter.floats: expected 2 values, got 3"):
        out.floats(np.zeros(3))
    with pytest.raises(ValueError, match="RowWriter.each: expected 2 pieces, got 1"):
        out.each([b"x"])
