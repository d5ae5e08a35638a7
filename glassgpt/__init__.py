"""glassgpt: a GPT you can pre-train, run and see through."""

from .config import ModelConfig, preset
from .model import GPT, Attention, Block, Embedding, KVCache, LearnedQueries, MLP, RoPE, Unembedding, softmax_with_temperature

__version__ = "0.1.0"
__all__ = ["ModelConfig", "preset", "GPT", "Attention", "Block", "Embedding", "KVCache", "LearnedQueries", "MLP",
           "RoPE", "Unembedding", "softmax_with_temperature"]
