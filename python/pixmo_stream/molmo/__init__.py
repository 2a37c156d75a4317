"""Molmo's training batch from pixmo-stream records: conversations (formatting), tokens with
the image spliced in, Molmo's collated batch, and packed rows of a token budget.

torch and tokenizers are imported only where they are needed."""
