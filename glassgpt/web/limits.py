"""What one request may ask of the server: every limit in one dataclass, with its default."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class Limits:
    max_body_bytes: int = 64 * 1024  # a request body larger than this gets 413
    max_prompt_chars: int = 20_000  # before tokenising; the token limit is the model's context window (G11)
    max_new_tokens: int = 512  # per generation
    max_generations: int = 2  # generations streaming at once; one more gets 429
    max_attention_cells: int = 8_000_000  # n_layers · n_heads · T² bytes for the attention grid
    max_analysis_tokens: int = 1024  # tokens for every analysis route and Step (a generation may fill the context)
    max_lens_tokens: int = 256  # the lens reads out (n_layers + 1) × T × d_vocab logits: 0.2 TFLOP at 256 on SmolLM2
    max_heavy_requests: int = 16  # model requests running or waiting at once; one more gets 429
    top_n: int = 50  # tokens listed by name in the next-token distribution
    max_lens_k: int = 10
    max_embed_k: int = 50
