"""Looking inside a model: attention patterns, the logit lens, embeddings as directions,
per-head statistics, and Q/K specialisation during training.

Everything here reads a `glassgpt.model.GPT` through `run_with_cache` and its weights; the
model itself knows nothing of this package. Figures live in `glassgpt.inspect.plots`.
"""
