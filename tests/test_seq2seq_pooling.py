import torch

from glassgpt.config import ModelConfig
from glassgpt.seq2seq.pooling import LearnedQueries, PoolConfig, PoolingClassifier
from glassgpt.seq2seq.task import Task, TaskConfig
from glassgpt.seq2seq.train import TrainConfig, accuracy, classifier_config, train_classifier

PAD = 0


def tiny() -> PoolingClassifier:
    torch.manual_seed(0)
    model = PoolingClassifier(PoolConfig(src_vocab=13, src_ctx=8, n_queries=3, d_model=32, n_heads=4, n_layers=1))
    with torch.no_grad():
        for p in model.parameters():
            if p.dim() == 2:
                p.normal_(std=0.3)
    return model.eval()


def test_fixed_queries_pool_over_the_sequence():
    model = tiny()
    assert isinstance(model.pool, LearnedQueries)
    src = torch.tensor([[3, 4, 5, 6, 7], [8, 9, PAD, PAD, PAD]])
    logits, cache = model.run_with_cache(src, names=["pool.attn.q", "pool.attn.pattern"])
    assert logits.shape == (2, 2)
    pattern = cache["pool.attn.pattern"]
    assert pattern.shape == (2, 4, 3, 5)  # (B, H, n_queries, T)
    assert torch.allclose(pattern.sum(-1), torch.ones(2, 4, 3))
    assert (pattern[1, :, :, 2:] == 0).all()  # padding is never read
    q = cache["pool.attn.q"]  # (B, H, n_queries, d_head)
    assert torch.allclose(q[0], q[1], atol=1e-6)  # the queries do not depend on the input: the same questions for every sequence
    assert not torch.allclose(pattern[0, :, 0], pattern[0, :, 1])  # different queries look at different places


def test_padding_changes_nothing():
    model = tiny()
    alone = model(torch.tensor([[3, 5, 4]]))
    padded = model(torch.tensor([[3, 5, 4, PAD, PAD], [6, 7, 8, 9, 10]]))
    assert torch.allclose(alone[0], padded[0], atol=1e-5)


def test_quick_training_beats_chance():
    task = Task(TaskConfig(name="sorted", max_len=8))
    model, log = train_classifier(task, classifier_config(task, d_model=32, n_layers=1),
                                  TrainConfig(steps=80, batch_size=64, lr=3e-3, warmup=10))
    assert sum(log["losses"][-10:]) / 10 < sum(log["losses"][:10]) / 10
    assert accuracy(model, task, n=1000) > 0.7  # chance is 0.5


def test_fixed_learned_queries_pool_a_sequence_whatever_its_order():
    cfg = ModelConfig(d_vocab=16, n_ctx=32, d_model=64, n_layers=1, n_heads=4)
    pool = LearnedQueries(cfg, n_queries=3)
    hidden = torch.randn(2, 10, cfg.d_model)
    out = pool(hidden)
    assert out.shape == (2, 3, cfg.d_model)
    perm = torch.randperm(10)
    assert torch.allclose(pool(hidden[:, perm]), out, atol=1e-5)  # no positions: a set, not a sequence
    key_mask = torch.ones(2, 10, dtype=torch.bool)
    key_mask[:, 7:] = False
    changed = hidden.clone()
    changed[:, 7:] = torch.randn(2, 3, cfg.d_model)
    assert torch.allclose(pool(changed, key_mask), pool(hidden, key_mask), atol=1e-6)
