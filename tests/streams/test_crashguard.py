"""The crash guard: deaths with messages in flight become suspect ranges, then poison."""

from __future__ import annotations

from privmon.agents.crashguard import CrashGuard
from privmon.agents.isolation import Quarantine


def _restart(path) -> tuple[CrashGuard, Quarantine]:
    guard, quarantine = CrashGuard(path), Quarantine()
    guard.load(quarantine)
    return guard, quarantine


def test_a_clean_return_leaves_nothing_to_suspect(tmp_path):
    path = tmp_path / "w1.json"
    guard, _ = _restart(path)
    guard.begin(0, 5, 9)
    guard.end()
    _, quarantine = _restart(path)
    assert not quarantine.active(0)


def test_a_death_makes_the_batch_suspect_and_two_alone_make_the_message_poison(tmp_path):
    path = tmp_path / "w1.json"
    guard, _ = _restart(path)
    guard.begin(0, 5, 9)  # ... and the process dies here
    guard, quarantine = _restart(path)
    assert quarantine.is_suspect(0, 7) and quarantine.poison_type(0, 7) is None
    guard.begin(0, 7, 7)  # alone now, and it dies again
    guard, quarantine = _restart(path)
    assert quarantine.poison_type(0, 7) is None  # one death alone: not yet
    guard.begin(0, 7, 7)
    guard, quarantine = _restart(path)
    assert quarantine.poison_type(0, 7) == "ProcessDied"
    assert not quarantine.poison_type(1, 7)  # per partition
    guard.forget_below(0, 10)  # committed past it: forgotten
    guard.begin(0, 10, 12)
    guard.end()
    _, quarantine = _restart(path)
    assert not quarantine.active(0)


def test_an_unreadable_note_is_ignored(tmp_path):
    path = tmp_path / "w1.json"
    path.write_text("{not json")
    _, quarantine = _restart(path)
    assert not quarantine.active(0)
