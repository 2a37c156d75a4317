"""One example's token layout, exactly as Molmo v1's ``MultiModalPreprocessor`` builds it.

From an `Example` (its annotations' messages) and the image's Molmo outputs:
- every message is tokenized on its own; every assistant message (odd index) gets EOS and has
  loss (1), user messages have none (0);
- one annotation: a plain conversation, positions ``0..n-1``, no ``subsegment_ids``;
- several: concatenated after one shared image prefix; ``subsegment_ids`` are 10000 on the
  prefix and ``k`` on annotation ``k`` (1-based), positions restart after the prefix for each
  annotation, and the loss of every annotation is scaled by ``sqrt(1 / n)``
  (``multi_annotation_weighting="root_subsegments"``);
- the image's tokens go at the very start, or in place of ``<|image|>`` in the text;
- ``input_tokens = [BOS] + tokens[:-1]``, ``target_tokens = tokens``, and ``image_input_idx``
  (where each pooled patch's features go) shifted by one for BOS, -100 kept for dropped patches.

Too long for ``max_tokens``: ``truncate="annotations"`` drops whole annotations from the end of
the (already shuffled) order, then whole trailing turns of the last one, and counts them;
nothing of the image and no answer is ever cut, and an example whose image plus first turn
does not fit raises `ExampleTooLong`. ``truncate="cut"`` keeps everything, for v1's collator
to cut the row at ``seq_len`` (possibly mid-answer), as Molmo v1 does.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

#: The subsegment of the shared image prefix (every annotation may attend to it).
PREFIX_SUBSEGMENT = 10000
TRUNCATIONS = ("annotations", "cut")
WEIGHTINGS = ("root_subsegments", None)


class ExampleTooLong(ValueError):
    """An example whose image and first turn alone exceed the token budget."""


@dataclass(frozen=True)
class Special:
    """The ids the layout needs."""

    bos: int
    eos: int
    image_prompt: int


@dataclass
class LayoutStats:
    """What truncation removed (counted per process)."""

    examples: int = 0
    dropped_annotations: int = 0
    dropped_turns: int = 0
    cut_examples: int = 0  # examples longer than seq_len under truncate="cut"
    # Records with nothing to train on (no annotation): replaced in a batch, left out of a row.
    empty_records: int = 0
    # Examples whose image and first turn alone exceed the row: replaced / left out likewise.
    too_long: int = 0

    def add(self, other: LayoutStats) -> None:
        self.examples += other.examples
        self.dropped_annotations += other.dropped_annotations
        self.dropped_turns += other.dropped_turns
        self.cut_examples += other.cut_examples
        self.empty_records += other.empty_records
        self.too_long += other.too_long


def tokenize_messages(tokenizer: Any, examples: Sequence[Any]) -> list[list[list[np.ndarray]]]:
    """Per example, per annotation, per message: its ids (one ``encode_batch`` for all)."""
    flat = [m for ex in examples for ann in ex.annotations for m in ann.messages]
    ids = tokenizer.encode_batch(flat)
    out: list[list[list[np.ndarray]]] = []
    i = 0
    for ex in examples:
        anns = []
        for ann in ex.annotations:
            n = len(ann.messages)
            anns.append(ids[i : i + n])
            i += n
        out.append(anns)
    return out


def _turns_length(messages: Sequence[np.ndarray], n_messages: int) -> int:
    # Assistant messages (odd index) carry one EOS more.
    return sum(len(m) for m in messages[:n_messages]) + n_messages // 2


def _fit(
    annotations: list[list[np.ndarray]], image_len: int, max_tokens: int, stats: LayoutStats
) -> list[list[np.ndarray]]:
    """The longest prefix of whole annotations (then of whole turns of the last) that fits."""
    total = image_len
    kept: list[list[np.ndarray]] = []
    for k, msgs in enumerate(annotations):
        n = _turns_length(msgs, len(msgs))
        if total + n <= max_tokens:
            kept.append(msgs)
            total += n
            continue
        if not kept:
            # Whole user/assistant pairs of the first annotation, as many as fit.
            pairs = len(msgs) // 2
            while pairs > 0 and total + _turns_length(msgs, 2 * pairs) > max_tokens:
                pairs -= 1
            if pairs == 0:
                raise ExampleTooLong(
                    f"the image ({image_len} tokens) and the first turn "
                    f"({_turns_length(msgs, 2)} tokens) exceed max_tokens={max_tokens}"
                )
            stats.dropped_turns += (len(msgs) - 2 * pairs) // 2
            kept.append(msgs[: 2 * pairs])
            k += 1
        stats.dropped_annotations += len(annotations) - k
        break
    return kept


def check_options(truncate: str, weighting: str | None) -> None:
    if truncate not in TRUNCATIONS:
        raise ValueError(f"truncate must be one of {TRUNCATIONS}, not {truncate!r}")
    if weighting not in WEIGHTINGS:
        raise ValueError(f"weighting must be one of {WEIGHTINGS}, not {weighting!r}")


def layout(
    annotations: list[list[np.ndarray]],
    image_tokens: np.ndarray,
    image_input_idx: np.ndarray,
    special: Special,
    *,
    max_tokens: int | None = None,
    truncate: str = "annotations",
    weighting: str | None = "root_subsegments",
    stats: LayoutStats | None = None,
) -> dict[str, np.ndarray]:
    """Molmo's per-example text arrays: ``input_tokens``, ``target_tokens``, ``loss_masks``,
    ``position_ids``, ``subsegment_ids`` (several annotations only) and the shifted
    ``image_input_idx``. `annotations`: per annotation, the ids of each message (user,
    assistant, user, ...)."""
    check_options(truncate, weighting)
    if not annotations or any(len(msgs) == 0 for msgs in annotations):
        raise ValueError("an example needs at least one annotation with messages")
    stats = stats if stats is not None else LayoutStats()
    stats.examples += 1
    image_tokens = np.asarray(image_tokens, dtype=np.int32)
    if max_tokens is not None and truncate == "annotations":
        annotations = _fit(annotations, len(image_tokens), max_tokens, stats)

    parts: list[np.ndarray] = []
    loss: list[np.ndarray] = []
    subs: list[np.ndarray] = []
    several = len(annotations) > 1
    weight = np.float32(math.sqrt(1 / len(annotations))) if several and weighting else None
    for k, msgs in enumerate(annotations, start=1):
        start = sum(len(p) for p in parts)
        for i, ids in enumerate(msgs):
            answer = i % 2 == 1
            if answer:
                ids = np.append(ids, np.int32(special.eos)).astype(np.int32)
            parts.append(ids)
            loss.append(np.full(len(ids), 1.0 if answer else 0.0, dtype=np.float32))
        if several:
            subs.append(np.full(sum(len(p) for p in parts) - start, k, dtype=np.int64))
    tokens = np.concatenate(parts).astype(np.int32)
    loss_masks = np.concatenate(loss)
    if weight is not None:
        loss_masks *= weight
    if not several:
        sub = None
    else:
        sub = np.concatenate(subs)

    # The image goes where <|image|> stands (which it replaces), else at the very start.
    at = np.flatnonzero(tokens == special.image_prompt)
    if len(at) > 1:
        raise ValueError(f"{len(at)} <|image|> tokens in the text of one example with one image")
    if len(at):
        ix, after, image_sub = int(at[0]), int(at[0]) + 1, int(at[0])
    else:
        ix, after, image_sub = 0, 0, PREFIX_SUBSEGMENT
    n_img = len(image_tokens)
    tokens = np.concatenate([tokens[:ix], image_tokens, tokens[after:]])
    loss_masks = np.concatenate(
        [loss_masks[:ix], np.zeros(n_img, dtype=np.float32), loss_masks[after:]]
    )
    if sub is not None:
        sub = np.concatenate([sub[:ix], np.full(n_img, image_sub, dtype=np.int64), sub[after:]])
    if tokens[-1] != special.eos:
        raise ValueError("the last message of a training example must be an answer")
    if max_tokens is not None and truncate == "cut" and len(tokens) > max_tokens:
        stats.cut_examples += 1

    idx = np.asarray(image_input_idx, dtype=np.int32)
    # Pooled-patch positions within the image's tokens -> within the input (after BOS).
    idx = np.where(idx >= 0, idx + np.int32(ix + 1), idx).astype(np.int32)
    out = {
        "input_tokens": np.concatenate([[np.int32(special.bos)], tokens[:-1]]).astype(np.int32),
        "target_tokens": tokens,
        "loss_masks": loss_masks,
        "image_input_idx": idx,
    }
    if sub is None:
        out["position_ids"] = np.arange(len(tokens), dtype=np.int64)
    else:
        # Aligned with the inputs (one to the right, the first repeated), as Molmo does.
        sub = np.concatenate([sub[:1], sub[:-1]])
        out["subsegment_ids"] = sub
        out["position_ids"] = _positions(sub)
    return out


def _positions(sub: np.ndarray) -> np.ndarray:
    """Molmo's positions under subsegments: a token of subsegment ``s`` is at the count of
    tokens up to it whose subsegment is ``>= s`` (those it may attend to), minus one."""
    pos = np.zeros(len(sub), dtype=np.int64)
    for s in np.unique(sub):
        here = sub == s
        pos[here] = (np.cumsum(sub >= s) - 1)[here]
    return pos


def text_length(annotations: list[list[int]]) -> int:
    """Tokens of the text of an example from each message's token count (EOS included)."""
    return sum(_turns_length([np.empty(n) for n in msgs], len(msgs)) for msgs in annotations)
