"""Validation helpers for privacy settings: errors that name the field, the value
that arrived and the fix (used by privacy/params.py and privacy/kinds/)."""

from __future__ import annotations

import math
from numbers import Integral, Real

import numpy as np


class PrivacyConfigError(ValueError):
    """A privacy setting is missing, out of range or inconsistent."""


def fail(where: str, field_name: str, value: object, fix: str) -> PrivacyConfigError:
    return PrivacyConfigError(f"{where}.{field_name} = {value!r}: {fix}")


def integer(where: str, name: str, value: object, *, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, Integral):
        raise TypeError(f"{where}.{name} = {value!r}: expected an integer >= {minimum}")
    if value < minimum:
        raise fail(where, name, value, f"expected an integer >= {minimum}")
    return int(value)


def real(where: str, name: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, Real):
        raise TypeError(f"{where}.{name} = {value!r}: expected a number")
    if not math.isfinite(float(value)):
        raise fail(where, name, value, "expected a finite number")
    return float(value)


def finite_field_values(metric: str, field: str, raw: object) -> np.ndarray:
    """An event field as float64, refusing NaN and inf (invalid events are
    dead-lettered before bounding, so reaching here with one is a bug)."""
    values = np.asarray(raw).astype(np.float64)
    if not np.isfinite(values).all():
        raise ValueError(
            f"metric {metric!r} (field {field!r}): expected finite numbers, "
            "got NaN or inf; invalid events must be dead-lettered before bounding"
        )
    return values
