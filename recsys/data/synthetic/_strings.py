"""Vectorised rendering of ids and timestamps as Arrow strings, and a counter-based hash RNG.

Python-level string formatting of a million ids costs about a second; building the bytes of
fixed-width strings with numpy and handing the buffers to Arrow costs milliseconds.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa

_HEX = np.frombuffer(b"0123456789abcdef", dtype=np.uint8)
_MASK48 = np.uint64((1 << 48) - 1)


def fixed_width(chars: np.ndarray) -> pa.StringArray:
    """An Arrow string array from an ``(n, width)`` uint8 matrix of ASCII bytes, one row per string."""
    n, width = chars.shape
    offsets = np.arange(0, (n + 1) * width, width, dtype=np.int32)
    data = np.ascontiguousarray(chars, dtype=np.uint8)
    return pa.StringArray.from_buffers(n, pa.py_buffer(offsets), pa.py_buffer(data))


_PAIRS = np.array([[ord(str(i // 10)), ord(str(i % 10))] for i in range(100)], dtype=np.uint8)
_HEX_PAIRS = np.array([[_HEX[i >> 4], _HEX[i & 15]] for i in range(256)], dtype=np.uint8)


def _decimal(numbers: np.ndarray, width: int) -> np.ndarray:
    """``(n, width)`` ASCII digits of non-negative numbers, zero-padded, most significant first."""
    values = numbers.astype(np.int64)
    pairs: list[np.ndarray] = []
    for _ in range((width + 1) // 2):
        values, low = np.divmod(values, 100)
        pairs.append(_PAIRS[low])
    chars = np.concatenate(pairs[::-1], axis=1)
    return chars[:, chars.shape[1] - width :]


def decimal_ids(prefix: str, numbers: np.ndarray, width: int) -> pa.StringArray:
    """``prefix`` + zero-padded decimal numbers, e.g. ``u000042``."""
    head = np.frombuffer(prefix.encode("ascii"), dtype=np.uint8)
    body = _decimal(numbers, width)
    chars = np.concatenate([np.broadcast_to(head, (len(numbers), len(head))), body], axis=1)
    return fixed_width(chars)


def scramble48(numbers: np.ndarray, key: int) -> np.ndarray:
    """A keyed bijection of ``[0, 2**48)``: distinct inputs give distinct, random-looking outputs."""
    x = numbers.astype(np.uint64) & _MASK48
    odd = np.uint64((0x9E3779B97F4A7C15 ^ (key * 0xBF58476D1CE4E5B9)) & ((1 << 48) - 1) | 1)
    with np.errstate(over="ignore"):
        for _ in range(2):
            x = (x * odd + np.uint64(key & 0xFFFFFFFF)) & _MASK48
            x ^= x >> np.uint64(23)
    return x


def hex_ids(prefix: str, numbers: np.ndarray, key: int) -> pa.StringArray:
    """``prefix`` + 12 hex digits of the keyed scramble of each number; unique per number."""
    head = prefix.encode("ascii")
    octets = scramble48(numbers, key).astype("<u8").view(np.uint8).reshape(-1, 8)[:, 5::-1]
    chars = np.empty((len(numbers), len(head) + 12), dtype=np.uint8)
    chars[:, : len(head)] = np.frombuffer(head, dtype=np.uint8)
    chars[:, len(head) :] = _HEX_PAIRS[octets].reshape(-1, 12)
    return fixed_width(chars)


def hex_ids_repeated(prefix: str, numbers: np.ndarray, key: int, dense_below: int) -> pa.Array:
    """Like :func:`hex_ids` for numbers with many repeats: numbers below ``dense_below`` mostly fill
    a narrow range, so each distinct one is rendered once and gathered."""
    dense = numbers < dense_below
    low = numbers[dense]
    if len(low) == 0:
        return hex_ids(prefix, numbers, key)
    first = int(low.min())
    span = int(low.max()) - first + 1
    if span > 2 * len(numbers):
        return hex_ids(prefix, numbers, key)
    sparse_values, sparse_index = np.unique(numbers[~dense], return_inverse=True)
    table = hex_ids(prefix, np.concatenate([np.arange(first, first + span), sparse_values]), key)
    index = np.empty(len(numbers), dtype=np.int64)
    index[dense] = low - first
    index[~dense] = span + sparse_index.reshape(-1)
    return table.take(pa.array(index))


def _civil_from_days(days: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Proleptic Gregorian (year, month, day) of days since 1970-01-01 (H. Hinnant's algorithm)."""
    z = days + 719468
    era = np.floor_divide(z, 146097)
    doe = z - era * 146097
    yoe = (doe - doe // 1460 + doe // 36524 - doe // 146096) // 365
    doy = doe - (365 * yoe + yoe // 4 - yoe // 100)
    mp = (5 * doy + 2) // 153
    day = doy - (153 * mp + 2) // 5 + 1
    month = np.where(mp < 10, mp + 3, mp - 9)
    year = yoe + era * 400 + (month <= 2)
    return year, month, day


def iso_millis(millis: np.ndarray) -> pa.StringArray:
    """ISO-8601 UTC strings with milliseconds, ``2024-03-01T12:00:00.000Z``, of epoch milliseconds.

    Years must lie in 0..9999.
    """
    ms = millis.astype(np.int64)
    n = len(ms)
    out = np.empty((n, 24), dtype=np.uint8)
    if n == 0:
        return fixed_width(out)
    days = np.floor_divide(ms, 86_400_000)
    first_day = int(days.min())
    # Dates are rendered once per distinct day in the span, then gathered.
    span = np.arange(first_day, int(days.max()) + 1, dtype=np.int64)
    year, month, day = _civil_from_days(span)
    dates = np.empty((len(span), 10), dtype=np.uint8)
    dates[:, 0:4] = _decimal(year, 4)
    dates[:, 5:7] = _PAIRS[month]
    dates[:, 8:10] = _PAIRS[day]
    dates[:, [4, 7]] = ord("-")
    seconds, millis_part = np.divmod(ms - days * 86_400_000, 1000)
    minutes, second = np.divmod(seconds, 60)
    hour, minute = np.divmod(minutes, 60)
    out[:, 0:10] = dates[days - first_day]
    out[:, 10] = ord("T")
    out[:, 11:13] = _PAIRS[hour]
    out[:, [13, 16]] = ord(":")
    out[:, 14:16] = _PAIRS[minute]
    out[:, 17:19] = _PAIRS[second]
    out[:, 19] = ord(".")
    out[:, 20:23] = _decimal(millis_part, 3)
    out[:, 23] = ord("Z")
    return fixed_width(out)


def hash_bits(keys: np.ndarray, salt: int) -> np.ndarray:
    """64 random bits per key that depend only on ``(key, salt)`` (splitmix64 finaliser).

    A counter-based generator: the draw for an item is the same whichever chunk renders it.
    """
    with np.errstate(over="ignore"):
        z = keys.astype(np.uint64) * np.uint64(0x9E3779B97F4A7C15)
        z += np.uint64((salt * 0xD1B54A32D192ED03) & 0xFFFFFFFFFFFFFFFF)
        z ^= z >> np.uint64(30)
        z *= np.uint64(0xBF58476D1CE4E5B9)
        z ^= z >> np.uint64(27)
        z *= np.uint64(0x94D049BB133111EB)
        z ^= z >> np.uint64(31)
    return z


def hash_uniform(keys: np.ndarray, salt: int) -> np.ndarray:
    """Uniform floats in [0, 1) from :func:`hash_bits`."""
    return (hash_bits(keys, salt) >> np.uint64(11)).astype(np.float64) * (1.0 / (1 << 53))


def hash_below(bits: np.ndarray, n: np.ndarray | int) -> np.ndarray:
    """Integers uniform in ``[0, n)`` from the high 32 of ``bits`` (``n < 2**31``)."""
    return ((bits >> np.uint64(32)) * np.asarray(n, dtype=np.uint64) >> np.uint64(32)).astype(np.int64)


def hash_chance(bits: np.ndarray, p: float) -> np.ndarray:
    """True with probability ``p``, from the low 32 of ``bits``."""
    return (bits & np.uint64(0xFFFFFFFF)) < np.uint64(int(p * 2**32))
