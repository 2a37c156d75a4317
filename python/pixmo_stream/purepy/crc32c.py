"""CRC-32C (Castagnoli, reflected polynomial 0x82F63B78), table-driven and vectorised.

The data is cut into `lanes` equal runs whose CRC registers numpy advances together, eight
bytes per step (slicing-by-8); the registers are then merged pairwise with the linear
"advance over k zero bytes" operator, and the few leftover bytes are done one at a time.
"""

from __future__ import annotations

import math

import numpy as np


def _make_tables() -> np.ndarray:
    t = np.zeros((8, 256), dtype=np.uint32)
    for i in range(256):
        c = i
        for _ in range(8):
            c = (c >> 1) ^ 0x82F63B78 if c & 1 else c >> 1
        t[0, i] = c
    for k in range(1, 8):
        prev = t[k - 1]
        t[k] = t[0][prev & 0xFF] ^ (prev >> 8)
    return t


_T = _make_tables()
_T0 = [int(x) for x in _T[0]]


def _crc_bytes(reg: int, data: bytes | memoryview) -> int:
    t = _T0
    for b in bytes(data):
        reg = t[(reg ^ b) & 0xFF] ^ (reg >> 8)
    return reg


def _op_apply(cols: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Apply the GF(2) 32x32 matrix given by its 32 column images `cols` to uint32 values `v`."""
    out = np.zeros_like(v)
    for j in range(32):
        out ^= np.where((v >> j) & 1 == 1, cols[j], np.uint32(0))
    return out


def _zero_op(nbytes: int) -> np.ndarray:
    """Column images of the operator advancing a CRC register over `nbytes` zero bytes."""
    basis = np.left_shift(np.uint32(1), np.arange(32, dtype=np.uint32))
    one = _T[0][basis & 0xFF] ^ (basis >> 8)
    result = basis.copy()
    power = one
    while nbytes:
        if nbytes & 1:
            result = _op_apply(power, result)
        nbytes >>= 1
        if nbytes:
            power = _op_apply(power, power)
    return result


def _op_tables(cols: np.ndarray) -> np.ndarray:
    """Four 256-entry tables so that op(x) = T0[b0] ^ T1[b1] ^ T2[b2] ^ T3[b3]."""
    b = np.arange(256, dtype=np.uint32)
    return np.stack([_op_apply(cols, b << np.uint32(8 * k)) for k in range(4)])


def _op_apply_tables(t: np.ndarray, v: np.ndarray) -> np.ndarray:
    return t[0][v & 0xFF] ^ t[1][(v >> 8) & 0xFF] ^ t[2][(v >> 16) & 0xFF] ^ t[3][v >> 24]


_SMALL = 4096


def crc32c(data: bytes | bytearray | memoryview, value: int = 0) -> int:
    """CRC-32C of `data`, continuing from a previous result `value` (0 to start)."""
    mv = memoryview(data).cast("B")
    n = len(mv)
    reg = (value ^ 0xFFFFFFFF) & 0xFFFFFFFF
    if n < _SMALL:
        return _crc_bytes(reg, mv) ^ 0xFFFFFFFF
    lane_len = max(64, (math.isqrt(n) // 8) * 8)
    lanes = n // lane_len
    words = (
        np.frombuffer(mv[: lanes * lane_len], dtype="<u4")
        .reshape(lanes, lane_len // 4)
        .T.astype(np.uint32, order="C")
    )
    regs = np.zeros(lanes, dtype=np.uint32)
    regs[0] = reg
    t0, t1, t2, t3, t4, t5, t6, t7 = _T
    for j in range(0, lane_len // 4, 2):
        lo = regs ^ words[j]
        hi = words[j + 1]
        regs = (
            t7[lo & 0xFF]
            ^ t6[(lo >> 8) & 0xFF]
            ^ t5[(lo >> 16) & 0xFF]
            ^ t4[lo >> 24]
            ^ t3[hi & 0xFF]
            ^ t2[(hi >> 8) & 0xFF]
            ^ t1[(hi >> 16) & 0xFF]
            ^ t0[hi >> 24]
        )
    # Merge: register(A || B) = zeros_op(|B|)(register(A)) ^ register(B), B's started at 0.
    # Leading all-zero lanes change nothing, so pad to a power of two and reduce pairwise.
    width = 1 << (lanes - 1).bit_length()
    regs = np.concatenate([np.zeros(width - lanes, dtype=np.uint32), regs])
    span = lane_len
    while len(regs) > 1:
        op = _op_tables(_zero_op(span))
        regs = _op_apply_tables(op, regs[0::2]) ^ regs[1::2]
        span *= 2
    reg = int(regs[0])
    return _crc_bytes(reg, mv[lanes * lane_len :]) ^ 0xFFFFFFFF
