"""What a model must beat (G7, T11): the loss of guessing from simple counts of the same data.

Each baseline is fitted on the training tokens and scored on the validation tokens, the same
held-out text a trained model's validation loss is measured on (cross-entropy, nats per token):

- uniform:  ln V — every token equally likely (an untrained model starts about here);
- unigram:  each token's frequency, ignoring the context;
- bigram:   the next token's frequency given the one before (one token of context).

Counts get add-α smoothing so a pair never seen in training costs a finite amount.
"""

from __future__ import annotations

import math

import torch


def ngram_losses(train: torch.Tensor, val: torch.Tensor, vocab_size: int, alpha: float = 0.1) -> dict[str, float]:
    """train, val: 1-D token ids → {"uniform", "unigram", "bigram"} cross-entropy on val."""
    train, val = train.long(), val.long()
    V = vocab_size
    unigram = torch.bincount(train, minlength=V).double() + alpha  # (V,)
    p1 = unigram / unigram.sum()
    bigram = torch.zeros(V * V, dtype=torch.float64)
    bigram.index_add_(0, train[:-1] * V + train[1:], torch.ones(len(train) - 1, dtype=torch.float64))
    bigram = bigram.view(V, V) + alpha  # (V, V): row = previous token
    p2 = bigram / bigram.sum(-1, keepdim=True)
    return {"uniform": math.log(V),
            "unigram": float(-p1[val].log().mean()),
            "bigram": float(-p2[val[:-1], val[1:]].log().mean())}
