"""Which Kafka errors a stage recovers from, and how repeated fencing is told apart
from a one-off (a coordinator failover or transaction timeout bumps the epoch)."""

from __future__ import annotations

import pytest
from aiokafka.errors import (
    KafkaConnectionError,
    NotCoordinatorError,
    ProducerFenced,
    TopicAuthorizationFailedError,
)

from privmon.agents.kafka_stage import FencedRepeatedly, FenceGuard, recoverable


def test_fencing_and_broker_loss_are_recoverable_refusals_and_bugs_are_not():
    assert recoverable(ProducerFenced())
    assert recoverable(KafkaConnectionError())
    assert recoverable(NotCoordinatorError())
    assert not recoverable(TopicAuthorizationFailedError())
    assert not recoverable(ZeroDivisionError())


def test_a_few_fences_pass_a_process_that_keeps_fencing_stops_the_worker():
    now = [0.0]
    guard = FenceGuard("privmon-s2-w1", limit=3, period_s=60, clock=lambda: now[0])
    for _ in range(3):
        guard.fenced()
        now[0] += 10
    with pytest.raises(FencedRepeatedly, match="privmon-s2-w1.*--worker-id"):
        guard.fenced()  # the 4th within 60 s


def test_fences_spread_over_time_never_add_up():
    now = [0.0]
    guard = FenceGuard("t", limit=2, period_s=60, clock=lambda: now[0])
    for _ in range(50):
        guard.fenced()
        now[0] += 31  # at most 2 within any 60 s


def test_sends_in_flight_together_raise_the_fencing_before_what_followed_it():
    """Stage 1's close sends each partition's records without waiting for the previous
    answer (agents/stage1_runner.py); past a fencing the later sends find no transaction
    (IllegalOperation, not recoverable): all_sent waits for every answer and raises the
    fencing, which the stage recovers from. Negative control: the first error alone
    would be the unrecoverable one."""
    import asyncio

    from aiokafka.errors import IllegalOperation

    from privmon.agents.kafka_io import all_sent

    async def answer(error: BaseException | None, delay: float) -> None:
        await asyncio.sleep(delay)
        if error is not None:
            raise error

    async def run(*answers: tuple[BaseException | None, float]) -> None:
        await all_sent([asyncio.ensure_future(answer(*a)) for a in answers])

    asyncio.run(run((None, 0.0), (None, 0.01)))  # every send answered: nothing raised
    with pytest.raises(ProducerFenced):
        asyncio.run(run((IllegalOperation(), 0.0), (ProducerFenced(), 0.02), (None, 0.01)))
    assert not recoverable(IllegalOperation())
    with pytest.raises(KafkaConnectionError):  # else the first error, once all answered
        asyncio.run(run((KafkaConnectionError(), 0.02), (TopicAuthorizationFailedError(), 0.0)))
