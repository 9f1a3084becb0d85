"""The batch murmur2 partitioner picks the partition aiokafka's DefaultPartitioner
(the one ``producer.send`` uses, a port of Kafka's Java Utils.murmur2) picks:
random keys of every length 0..80, every tail length, bytes >= 0x80 (sign
handling), and partition counts 1..64."""

from __future__ import annotations

import random

import pytest
from aiokafka.partitioner import DefaultPartitioner, murmur2

from privmon.streams.partitioner import (
    murmur2_many,
    partition_for_key,
    partitions_for_keys,
)


def test_murmur2_equals_aiokafkas_on_random_keys():
    rng = random.Random(7)
    keys = [bytes(rng.randrange(256) for _ in range(rng.randrange(81))) for _ in range(3000)]
    keys += [b"", b"a", b"ab", b"abc", b"\xff" * 7, b"monitoring|1764000000000|fra-01|eu"]
    got = murmur2_many(keys).tolist()
    assert got == [murmur2(k) & 0xFFFFFFFF for k in keys]


@pytest.mark.parametrize("partitions", [1, 2, 3, 4, 7, 12, 64])
def test_partitions_equal_the_default_partitioners(partitions):
    rng = random.Random(partitions)
    keys = [f"monitoring|{rng.randrange(10**13)}|s{rng.randrange(10**5):05d}|r{i % 4}"
            .encode() for i in range(2000)]
    every = list(range(partitions))
    expected = [DefaultPartitioner()(k, every, every) for k in keys]
    assert partitions_for_keys(keys, partitions).tolist() == expected
    assert [partition_for_key(k, partitions) for k in keys[:50]] == expected[:50]


def test_no_keys_and_bad_partition_counts():
    assert partitions_for_keys([], 4).tolist() == []
    with pytest.raises(ValueError, match="partitions: expected >= 1, got 0"):
        partitions_for_keys([b"x"], 0)
