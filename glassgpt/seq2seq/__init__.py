"""Cross-attention and fixed learned queries at work (T5), built from the GPT's own Attention/MLP/Block.

- `model.EncoderDecoder`: a translator (bidirectional encoder, decoder with cross-attention).
- `task`: generated data (numbers in digits ↔ English words; "is this digit string sorted?").
- `decode`: greedy and beam search with KV caches for self- and cross-attention.
- `pooling.PoolingClassifier`: attention pooling with fixed learned queries.
- `train`, `checkpoint`, `plots`: training, run folders, alignment heatmaps.
"""

from .model import EncoderDecoder, Seq2SeqConfig
from .pooling import PoolConfig, PoolingClassifier
from .task import Task, TaskConfig

__all__ = ["EncoderDecoder", "Seq2SeqConfig", "PoolConfig", "PoolingClassifier", "Task", "TaskConfig"]
