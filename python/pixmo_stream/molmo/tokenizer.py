"""`MolmoTokenizer`: a text tokenizer with Molmo's five image tokens, as Molmo's training uses it.

Molmo (``olmo/tokenizer.py``) encodes every message with ``add_special_tokens=False``, appends
five special tokens to the vocabulary (after padding it to the model's embedding size when one
is given, so that they land at ``vocab_size + 0..4``), and uses EOS as BOS for tokenizers that
have no BOS (Qwen2, OLMo). ``tokenizers`` is imported only here, when a tokenizer is built.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

IM_START = "<im_start>"
IM_END = "<im_end>"
IM_PATCH = "<im_patch>"
IM_COL = "<im_col>"
IMAGE_PROMPT = "<|image|>"
#: Molmo's extra tokens, in the order Molmo adds them.
EXTRA_TOKENS = (IM_START, IM_END, IM_PATCH, IM_COL, IMAGE_PROMPT)

# Tried in order when the tokenizer does not say which token is EOS.
_EOS_GUESSES = ("<|endoftext|>", "<|end_of_text|>", "</s>", "<eos>", "<|eos|>", "<|im_end|>")


def _padding_token(i: int) -> str:
    # The names Molmo pads the vocabulary with (never seen in text).
    return f"|<EXTRA_TOKENS_{i}>|"


def _as_backend(tokenizer: Any) -> tuple[Any, int | None, int | None]:
    """A private `tokenizers.Tokenizer` copy of `tokenizer`, and its own BOS / EOS ids."""
    from tokenizers import Tokenizer

    if isinstance(tokenizer, (str, os.PathLike)):
        path = os.fspath(tokenizer)
        if os.path.isdir(path):
            path = os.path.join(path, "tokenizer.json")
        try:
            return Tokenizer.from_file(path), None, None
        except Exception as e:
            raise ValueError(f"{path}: not a tokenizers tokenizer.json file ({e})") from e
    if isinstance(tokenizer, Tokenizer):
        # Adding tokens changes a tokenizer: work on a copy, never on the caller's.
        return Tokenizer.from_str(tokenizer.to_str()), None, None
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if isinstance(backend, Tokenizer):  # a transformers "fast" tokenizer
        bos = getattr(tokenizer, "bos_token_id", None)
        eos = getattr(tokenizer, "eos_token_id", None)
        return Tokenizer.from_str(backend.to_str()), bos, eos
    raise TypeError(
        "tokenizer must be a tokenizers.Tokenizer, a path to a tokenizer.json, or a transformers "
        f"fast tokenizer (with backend_tokenizer), not {type(tokenizer).__name__}"
    )


def _token_id(tok: Any, value: int | str | None, what: str) -> int | None:
    if value is None or isinstance(value, int):
        return value
    found = tok.token_to_id(value)
    if found is None:
        raise ValueError(f"{what} token {value!r} is not in the tokenizer's vocabulary")
    return int(found)


class MolmoTokenizer:
    """Molmo's tokenizer wrapper.

    Args:
        tokenizer: a ``tokenizers.Tokenizer``, a ``tokenizer.json`` path (or a folder holding
            one), or a ``transformers`` fast tokenizer. It is copied, never modified.
        vocab_size: Molmo's ``pad_tokenizer_to``: the vocabulary is padded with placeholder
            tokens up to this size and the five extra tokens get ``vocab_size + 0..4``
            (Qwen2-7B: 152064). ``None``: they are added after the current vocabulary (kept
            where the tokenizer already has them), as ``additional_special_tokens`` does.
        extra_ids: the five tokens' ids given explicitly (a mapping from the token strings of
            `EXTRA_TOKENS`, or five ids in that order), e.g. to match a checkpoint.
        eos / bos: the EOS and BOS tokens (id or string); default the transformers tokenizer's
            own, else a usual EOS name; BOS is EOS where there is none (Molmo's rule).
    """

    def __init__(
        self,
        tokenizer: Any,
        *,
        vocab_size: int | None = None,
        extra_ids: Mapping[str, int] | Sequence[int] | None = None,
        eos: int | str | None = None,
        bos: int | str | None = None,
    ) -> None:
        if vocab_size is not None and extra_ids is not None:
            raise ValueError("give vocab_size or extra_ids, not both")
        tok, own_bos, own_eos = _as_backend(tokenizer)
        eos_id = _token_id(tok, eos, "eos") if eos is not None else own_eos
        if eos_id is None:
            eos_id = next(
                (tok.token_to_id(t) for t in _EOS_GUESSES if tok.token_to_id(t) is not None), None
            )
        if eos_id is None:
            raise ValueError(
                f"the tokenizer has none of the usual EOS tokens {_EOS_GUESSES}: pass eos="
            )
        bos_id = _token_id(tok, bos, "bos") if bos is not None else own_bos
        self.eos_id = int(eos_id)
        self.bos_id = int(bos_id) if bos_id is not None else self.eos_id
        self._remap: dict[int, int] = {}
        if vocab_size is not None:
            ids = self._pad_and_add(tok, int(vocab_size))
        else:
            from tokenizers import AddedToken

            tok.add_special_tokens(
                [AddedToken(t, special=True, normalized=False) for t in EXTRA_TOKENS]
            )
            ids = [int(tok.token_to_id(t)) for t in EXTRA_TOKENS]
            if extra_ids is not None:
                wanted = self._given_ids(extra_ids)
                # The text side knows the tokens by the ids just added; map them to the given.
                self._remap = {a: b for a, b in zip(ids, wanted, strict=True) if a != b}
                ids = wanted
        self._tok = tok
        self.extra_ids: dict[str, int] = dict(zip(EXTRA_TOKENS, ids, strict=True))
        self._lookup: np.ndarray | None = None
        if self._remap:
            size = max(max(self._remap), tok.get_vocab_size(with_added_tokens=True)) + 1
            lookup = np.arange(size, dtype=np.int64)
            for a, b in self._remap.items():
                lookup[a] = b
            self._lookup = lookup

    @staticmethod
    def _given_ids(extra_ids: Mapping[str, int] | Sequence[int]) -> list[int]:
        if isinstance(extra_ids, Mapping):
            missing = [t for t in EXTRA_TOKENS if t not in extra_ids]
            if missing:
                raise ValueError(f"extra_ids lacks {missing}")
            out = [int(extra_ids[t]) for t in EXTRA_TOKENS]
        else:
            out = [int(i) for i in extra_ids]
            if len(out) != len(EXTRA_TOKENS):
                raise ValueError(f"give {len(EXTRA_TOKENS)} extra ids, in the order {EXTRA_TOKENS}")
        if len(set(out)) != len(out) or min(out) < 0:
            raise ValueError(f"extra ids must be distinct and non-negative, not {out}")
        return out

    @staticmethod
    def _pad_and_add(tok: Any, vocab_size: int) -> list[int]:
        from tokenizers import AddedToken

        have = tok.get_vocab_size(with_added_tokens=True)
        if have > vocab_size:
            raise ValueError(f"the tokenizer has {have} tokens, more than vocab_size={vocab_size}")
        names = [_padding_token(i) for i in range(vocab_size - have)] + list(EXTRA_TOKENS)
        tok.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in names])
        ids = [int(tok.token_to_id(t)) for t in EXTRA_TOKENS]
        want = list(range(vocab_size, vocab_size + len(EXTRA_TOKENS)))
        if ids != want:
            raise ValueError(
                f"the extra tokens got ids {ids}, not {want}: the tokenizer already holds some "
                "of them (pass extra_ids= instead of vocab_size=)"
            )
        return ids

    # ---- ids ------------------------------------------------------------------------------
    @property
    def image_token_ids(self) -> Any:
        """The ids as `pixmo_stream.image.MolmoTokenIds` (what the image preprocessing writes)."""
        from ..image import MolmoTokenIds

        e = self.extra_ids
        return MolmoTokenIds(start=e[IM_START], end=e[IM_END], patch=e[IM_PATCH], col=e[IM_COL])

    @property
    def image_prompt_id(self) -> int:
        return self.extra_ids[IMAGE_PROMPT]

    def __len__(self) -> int:
        return max(
            self._tok.get_vocab_size(with_added_tokens=True), max(self.extra_ids.values()) + 1
        )

    @property
    def fingerprint(self) -> str:
        """A hash of the vocabulary, merges, special ids: what decides every token id."""
        h = hashlib.sha256(self._tok.to_str().encode())
        h.update(repr((self.bos_id, self.eos_id, sorted(self.extra_ids.items()))).encode())
        return h.hexdigest()[:32]

    # ---- encoding -------------------------------------------------------------------------
    def _mapped(self, ids: Sequence[int]) -> np.ndarray:
        arr = np.asarray(ids, dtype=np.int64)
        if self._lookup is not None and arr.size:
            inside = arr < len(self._lookup)
            arr = np.where(inside, self._lookup[np.where(inside, arr, 0)], arr)
        return arr.astype(np.int32)

    def encode(self, text: str) -> np.ndarray:
        """``int32`` ids of `text`, no special tokens added (Molmo's ``encode``)."""
        return self._mapped(self._tok.encode(text, add_special_tokens=False).ids)

    def encode_batch(self, texts: Sequence[str]) -> list[np.ndarray]:
        """`encode` of many texts at once (``tokenizers`` runs them with the GIL released)."""
        if not texts:
            return []
        encs = self._tok.encode_batch(list(texts), add_special_tokens=False)
        return [self._mapped(e.ids) for e in encs]

    def decode(self, ids: Sequence[int], *, skip_special_tokens: bool = False) -> str:
        """Text of `ids` (pads, i.e. negative ids, skipped), special tokens kept by default."""
        back = {b: a for a, b in self._remap.items()}
        clean = [back.get(int(i), int(i)) for i in ids if int(i) >= 0]
        return self._tok.decode(clean, skip_special_tokens=skip_special_tokens)

    # ---- pickling (DataLoader workers) -----------------------------------------------------
    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_tok"] = self._tok.to_str()
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        from tokenizers import Tokenizer

        state = dict(state)
        state["_tok"] = Tokenizer.from_str(state["_tok"])
        self.__dict__.update(state)

    def __repr__(self) -> str:
        return (
            f"MolmoTokenizer(tokens={len(self)}, bos={self.bos_id}, eos={self.eos_id}, "
            f"extra={self.extra_ids})"
        )
