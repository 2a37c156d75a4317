"""The random choices of formatting, made two ways: drawn from an example's generator
(`Drawn`), or the choice that makes the text longest (`Longest`, for `Formatter.bound`).

Both expose the same methods, so one code path formats an example and bounds its length.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from .templates import fill

#: Molmo keeps a demo style's prefix when a uniform draw is <= 0.1 (10 % of the time).
KEEP_STYLE_PREFIX = 0.1
#: Molmo drops the length hint when a uniform draw is <= 0.1, else adds N(0, 25) noise.
NO_LENGTH_HINT = 0.1
LENGTH_NOISE = 25.0
#: `Longest` bounds the noise at 4 standard deviations (exceeded with probability 6e-5).
NOISE_BOUND = 4 * LENGTH_NOISE


class Drawn:
    """Choices drawn from ``rng`` (one draw per call, in call order)."""

    def __init__(self, rng: np.random.Generator) -> None:
        self.rng = rng

    def pick(self, options: Sequence[str], values: Mapping[str, str] | None = None) -> str:
        """One of ``options``, uniformly, with its ``{keywords}`` filled from ``values``."""
        choice = options[int(self.rng.integers(len(options)))]
        return fill(choice, **values) if values else choice

    def keep_style_prefix(self) -> bool:
        return bool(self.rng.random() <= KEEP_STYLE_PREFIX)

    def length_hint(self, n_chars: int) -> str:
        """``" 83"`` (a noisy ``n_chars // 15``) or ``""`` (no hint, 10 % of the time)."""
        if self.rng.random() <= NO_LENGTH_HINT:
            return ""
        noise = int(self.rng.normal(scale=LENGTH_NOISE))  # int() truncates, as Molmo's does
        return f" {(n_chars + noise) // 15}"

    def order(self, n: int) -> list[int]:
        """The training order of ``n`` annotations (one permutation when there are several)."""
        return [int(i) for i in self.rng.permutation(n)] if n > 1 else list(range(n))


class Longest:
    """The choice whose text is longest (in characters), without randomness."""

    def pick(self, options: Sequence[str], values: Mapping[str, str] | None = None) -> str:
        filled = [fill(o, **values) if values else o for o in options]
        return max(filled, key=len)

    def keep_style_prefix(self) -> bool:
        return True

    def length_hint(self, n_chars: int) -> str:
        # The hint's length grows with |n_chars + noise| // 15, so the longest is at an end of
        # the noise's (bounded) range.
        ends = (f" {(n_chars + s * int(NOISE_BOUND)) // 15}" for s in (1, -1))
        return max(ends, key=len)

    def order(self, n: int) -> list[int]:
        return list(range(n))


Draws = Drawn | Longest
