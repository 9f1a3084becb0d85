"""Where release noise comes from: a secret noise key and what is being noised.

  # (noise key of the window's day, stream, policy version, window, cell, quantity)
  #   -> KeyedStream (privacy/samplers.py) -> that quantity's exact draws

Noise is a pure function of this context and the key, so a release recomputed
after a crash, a fencing or a timeout is byte-identical to the aborted attempt:
a reader who sees both (``read_uncommitted``) gets the same value twice, not
two draws to average. That is safe only because a window's exact totals cannot
differ between attempts: stage 2 releases a window once every stage-1
partition has committed a mark past it, in the same transaction as its last
partials, and a stage-1 partition never writes a partial for a window at or
before its committed mark (agents/stage1.py); same partials, same totals.

The key (``PRIVMON_NOISE_KEYS``, dated like the pseudonym keys, see
``privacy/keys.py``) is required: without it the worker does not start. It
is never logged. Rotating it changes every later window's noise, and nothing
else; a policy version is part of the context, so a new policy draws anew.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from itertools import repeat
from json.encoder import encode_basestring_ascii  # type: ignore[attr-defined]
from typing import TYPE_CHECKING

import numpy as np

from privmon.privacy.keys import DatedKeys
from privmon.privacy.samplers import KeyedStream, KeyedStreams

if TYPE_CHECKING:
    from privmon.privacy.mechanisms import IntegerNoise

ENV = "PRIVMON_NOISE_KEYS"
_CONTEXT = "privmon.noise/1"


class WindowNoise:
    """The noise streams of one (stream, policy version, window)."""

    def __init__(self, key: bytes, stream: str, policy_version: str, window_start_ms: int) -> None:
        self._key = key
        # the context is the JSON of [*prefix, cell, quantity]; its head is the same for
        # every stream of the window (built by parts: ~4 per cell in a window of 10k)
        self._head = _json([_CONTEXT, stream, policy_version, int(window_start_ms)])[:-1]
        self._cells: dict[tuple, str] = {}  # cell -> head and cell JSON (~4 uses each)
        self._prepared: Prepared = {}  # draws made ahead (prepare)

    def _cell_part(self, cell: Sequence[str]) -> str:
        key = tuple(cell)
        part = self._cells.get(key)
        if part is None:
            part = self._cells[key] = self._context_head(cell)
        return part

    def _context_head(self, cell: Sequence[str]) -> str:
        """The context of a cell's quantities, up to the quantity."""
        return f"{self._head},{_cell_json(cell)},"

    def context(self, cell: Sequence[str], quantity: str) -> bytes:
        """json.dumps([context, stream, version, window, list(cell), quantity]), compact."""
        return f"{self._cell_part(cell)}{_quantity_json(quantity)}]".encode()

    def stream(self, cell: Sequence[str], quantity: str) -> KeyedStream:
        """The stream of one quantity ("accounts", "events", a metric, "bootstrap:...")."""
        return KeyedStream(self._key, self.context(cell, quantity))

    def streams(self, cells: Sequence[Sequence[str]], quantity: str) -> KeyedStreams:
        """The streams of one quantity of many cells (drawn from in one batch)."""
        tail = f"{_quantity_json(quantity)}]"
        part = self._cell_part
        return KeyedStreams(self._key, [f"{part(c)}{tail}".encode() for c in cells])

    def cells(self, cells: Sequence[Sequence[str]]) -> CellsNoise:
        """The streams of a window's cells, their contexts' cell parts built once for
        every quantity they draw (4 or more per cell) and only if one is drawn now, and
        the draws ``prepare`` made ahead for them."""
        return CellsNoise(self._key, [tuple(c) for c in cells], self._context_head,
                          self._prepared)

    def prepare(self, cells: Sequence[Sequence[str]], plan: Plan) -> None:
        """Draw ahead, for ``cells``, the noise of each (quantity, noise, values per
        row) of ``plan``: the very draws a release of those cells makes later, since a
        draw is a function of the key and its context alone, never of a value. For
        cells known before the data (public cells), so a release need not wait for
        its noise (agents/stage2.py)."""
        cells = [tuple(c) for c in cells]
        row = {c: i for i, c in enumerate(cells)}
        fresh = CellsNoise(self._key, cells, self._context_head, {})
        everyone = range(len(cells))
        for quantity, noise, width in plan:
            draws = noise.draws(fresh.streams(everyone, quantity), width)
            self._prepared[(quantity, noise.identity, width)] = (
                row, draws.reshape(len(cells), width))


# What a release draws: (quantity, its noise, values per row) (privacy/release.py)
Plan = Sequence[tuple[str, "IntegerNoise", int]]
# (quantity, noise identity, width) -> (cell -> row, int64[rows, width] draws)
Prepared = dict[tuple[str, tuple, int], tuple[dict[tuple, int], np.ndarray]]


class CellsNoise:
    """The noise streams of a fixed list of cells of one window, by position."""

    def __init__(self, key: bytes, cells: list[tuple], head: Callable[[tuple], str],
                 prepared: Prepared) -> None:
        self._key, self._cells = key, cells
        self._head = head  # cell -> its context up to the quantity
        self._parts: list[str] | None = None  # (built at the first draw not made ahead)
        self._prepared = prepared
        self._rows: list[tuple[dict, np.ndarray]] = []  # (prepared row map, row of cell i)

    def streams(self, rows: Sequence[int], quantity: str) -> KeyedStreams:
        """The streams of one quantity of the cells at ``rows``: the streams
        ``WindowNoise.streams`` gives for those cells."""
        if self._parts is None:
            self._parts = list(map(self._head, self._cells))
        tail = f"{_quantity_json(quantity)}]"
        parts = self._parts
        return KeyedStreams(self._key, [f"{parts[i]}{tail}".encode() for i in rows])

    def draws(self, noise: IntegerNoise, rows: Sequence[int], quantity: str,
              width: int = 1) -> np.ndarray:
        """``noise.draws`` of the streams of ``rows`` (int64[len(rows) * width]): drawn
        ahead by ``WindowNoise.prepare`` if it drew every one of them, else now."""
        hit = self._prepared.get((quantity, noise.identity, width))
        if hit is not None:
            row, draws = hit
            # each cell's row in the draws made ahead (-1: none), once per row map (a
            # prepare's quantities share theirs)
            of_cell = next((at for known, at in self._rows if known is row), None)
            if of_cell is None:
                if len(row) == len(self._cells) and list(row) == self._cells:
                    of_cell = np.arange(len(self._cells))  # (the cells drawn for, in order)
                else:
                    get = row.get
                    of_cell = np.fromiter(map(get, self._cells, repeat(-1)), np.int64,
                                          len(self._cells))
                self._rows.append((row, of_cell))
            at = of_cell[np.asarray(rows, np.int64)]
            if (at >= 0).all():
                return draws[at].reshape(-1)
        return noise.draws(self.streams(rows, quantity), width)


def _json(value: object) -> str:
    return json.dumps(value, separators=(",", ":"))


def _quantity_json(quantity: str) -> str:
    return encode_basestring_ascii(quantity) if type(quantity) is str else _json(quantity)


def _cell_json(cell: Sequence[str]) -> str:
    """json.dumps(list(cell)), compact: by the C string encoder where every part is a
    string (tests/privacy/test_noise_keys.py checks it against json.dumps)."""
    if all(type(c) is str for c in cell):
        return "[" + ",".join(map(encode_basestring_ascii, cell)) + "]"
    return _json(list(cell))


class NoiseKeys:
    """The dated noise keys; ``window(...)`` picks the key of the window's start."""

    def __init__(self, keys: Mapping[int, bytes] | DatedKeys) -> None:
        self._keys = keys if isinstance(keys, DatedKeys) else DatedKeys(ENV, keys)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> NoiseKeys:
        return cls(DatedKeys.from_env(ENV, "draw release noise", environ))

    @property
    def keys(self) -> DatedKeys:
        return self._keys

    def window(self, stream: str, policy_version: str, window_start_ms: int) -> WindowNoise:
        return WindowNoise(self._keys.at(window_start_ms), stream, policy_version,
                           window_start_ms)

    def __repr__(self) -> str:  # never the keys
        return f"NoiseKeys({len(self._keys.starts)} keys)"
