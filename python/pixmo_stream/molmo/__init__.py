"""Molmo's training batch from pixmo-stream records: conversations (formatting), tokens with
the image spliced in, Molmo's collated batch, and packed rows of a token budget.

torch and tokenizers are imported only where they are needed."""

from .batches import Batches
from .collate import collate, collate_packed, normalize_images
from .costs import costs
from .formatting import Annotation, Example, FormatError, Formatter
from .rng import example_rng
from .tokenizer import EXTRA_TOKENS, MolmoTokenizer
from .tokens import ExampleTooLong, LayoutStats, layout

__all__ = [
    "EXTRA_TOKENS",
    "Annotation",
    "Batches",
    "Example",
    "ExampleTooLong",
    "FormatError",
    "Formatter",
    "LayoutStats",
    "MolmoTokenizer",
    "collate",
    "collate_packed",
    "costs",
    "example_rng",
    "layout",
    "normalize_images",
]
