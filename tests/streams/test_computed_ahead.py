"""computed_ahead (agents/kafka_stage.py): both stages compute a step's next part in a
thread while this part is sent; results in order, and nothing left computing after a
caller that raised."""

from __future__ import annotations

import asyncio
import threading
import time
from contextlib import aclosing

import pytest

from privmon.agents.kafka_stage import computed_ahead


def test_each_item_gets_its_own_result_in_order_computed_off_the_loop():
    loop_thread = threading.get_ident()
    where: list[int] = []

    def square(x: int) -> int:
        where.append(threading.get_ident())
        return x * x

    async def run() -> list[tuple[int, int]]:
        out = []
        async with aclosing(computed_ahead([1, 2, 3, 4], square)) as results:
            async for item, result, seconds, waited in results:
                assert seconds >= 0 and waited >= 0
                out.append((item, result))
        return out

    assert asyncio.run(run()) == [(1, 1), (2, 4), (3, 9), (4, 16)]
    assert loop_thread not in where  # never on the event loop
    assert asyncio.run(_collect([])) == []


async def _collect(items: list[int]) -> list[int]:
    async with aclosing(computed_ahead(items, lambda x: x)) as results:
        return [r async for _, r, _, _ in results]


def test_a_caller_that_raises_waits_for_the_next_item_in_flight():
    finished: list[int] = []

    def slow(x: int) -> int:
        time.sleep(0.05)
        finished.append(x)
        return x

    async def run() -> list[int]:
        with pytest.raises(RuntimeError, match="a send failed"):
            async with aclosing(computed_ahead([1, 2, 3], slow)) as results:
                async for item, _, _, _ in results:
                    assert item == 1
                    raise RuntimeError("a send failed")
        return list(finished)  # (before asyncio.run's own wait for the executor)

    # item 2 was computing when the caller raised: done by then; item 3 never began
    assert asyncio.run(run()) == [1, 2]
