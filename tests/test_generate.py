import pytest
import torch

from glassgpt import GPT, preset
from glassgpt.errors import GlassError
from glassgpt.generate import SampleConfig, Sampler, TextStream, generate, generate_batch, generate_ids, stream
from glassgpt.tokenizer import BPETokenizer, CharTokenizer

V = 97


@pytest.fixture(scope="module")
def llama() -> GPT:
    torch.manual_seed(1)
    cfg = preset("smollm2-135m", d_vocab=V, n_ctx=48, d_model=96, n_layers=2, n_heads=6, n_kv_heads=2, d_mlp=128)
    return GPT(cfg).eval()


def test_left_padded_batches_generate_what_each_prompt_generates_alone(llama):
    prompts = [[5, 6, 7, 8, 9, 10, 11], [1, 2], [40, 41, 42, 43]]
    cfg = SampleConfig(max_new_tokens=10, temperature=0)
    batch = torch.stack(list(generate_ids(llama, prompts, cfg)), dim=1)
    for row, p in enumerate(prompts):
        alone = torch.stack(list(generate_ids(llama, [p], cfg)), dim=1)[0]
        assert batch[row].tolist() == alone.tolist()


def test_greedy_generation_is_the_argmax_of_full_recomputation(llama):
    prompt = [3, 1, 4, 1, 5]
    got = [int(t[0]) for t in generate_ids(llama, [prompt], SampleConfig(max_new_tokens=12, temperature=0))]
    seq = list(prompt)
    for _ in range(12):
        seq.append(int(llama(torch.tensor([seq]))[0, -1].argmax()))
    assert got == seq[len(prompt):]


def test_sampling_is_reproducible_with_a_seed_and_follows_the_distribution(llama):
    cfg = SampleConfig(max_new_tokens=15, temperature=1.0, seed=123)
    a = [int(t[0]) for t in generate_ids(llama, [[1, 2, 3]], cfg)]
    b = [int(t[0]) for t in generate_ids(llama, [[1, 2, 3]], SampleConfig(max_new_tokens=15, temperature=1.0, seed=123))]
    assert a == b
    logits = torch.tensor([[2.0, 1.0, 0.0, -1.0]])
    sampler = Sampler(SampleConfig(temperature=1.0, seed=0))
    counts = torch.bincount(torch.cat([sampler.sample(logits) for _ in range(4000)]), minlength=4).float() / 4000
    assert (counts - logits.softmax(-1)[0]).abs().max() < 0.03


def test_stop_ids_end_a_row_and_later_steps_report_minus_one(llama):
    first = int(next(generate_ids(llama, [[1, 2, 3]], SampleConfig(max_new_tokens=1, temperature=0)))[0])
    steps = list(generate_ids(llama, [[1, 2, 3], [7, 8]], SampleConfig(max_new_tokens=6, temperature=0,
                                                                       stop_ids=[first])))
    assert int(steps[0][0]) == first
    assert all(int(s[0]) == -1 for s in steps[1:])


def test_generation_stops_at_the_end_of_the_context_window(llama):
    steps = list(generate_ids(llama, [list(range(40))], SampleConfig(max_new_tokens=100, temperature=0)))
    assert 40 + len(steps) == llama.cfg.n_ctx + 1  # the last token is sampled from the full window
    with pytest.raises(GlassError, match="49 tokens but the context window holds 48"):
        next(generate_ids(llama, [list(range(49))], SampleConfig(max_new_tokens=1)))


@pytest.mark.parametrize("bad", [dict(temperature=-1), dict(top_k=0), dict(top_p=0.0), dict(top_p=1.5),
                                 dict(min_p=2.0), dict(repetition_penalty=0), dict(max_new_tokens=-1)])
def test_bad_sampling_settings_are_refused(bad):
    with pytest.raises(GlassError, match=next(iter(bad))):
        SampleConfig(**bad)


def test_filters_cut_what_they_should():
    logits = torch.tensor([[4.0, 3.0, 2.0, 1.0, 0.0]])
    keep = lambda **kw: torch.isfinite(Sampler(SampleConfig(**kw)).filter(logits))[0].tolist()
    assert keep(top_k=2) == [True, True, False, False, False]
    p = logits.softmax(-1)[0]
    assert keep(top_p=float(p[0]) - 1e-3) == [True, False, False, False, False]
    assert keep(top_p=float(p[0] + p[1]) + 1e-3) == [True, True, True, False, False]
    assert keep(min_p=float(p[2] / p[0]) - 1e-4) == [True, True, True, False, False]
    penalised = Sampler(SampleConfig(repetition_penalty=2.0)).filter(torch.tensor([[2.0, -2.0, 1.0]]),
                                                                       torch.tensor([[0, 1]]))
    assert penalised.tolist() == [[1.0, -4.0, 1.0]]


def test_text_stream_holds_back_half_characters_and_stop_strings():
    tok = BPETokenizer.train(["abc"], vocab_size=300)
    ids = tok.encode("ab你好🙂cd")
    pieces, s = [], TextStream(tok)
    for i in ids:
        pieces.append(s.push(i))
    pieces.append(s.flush())
    assert "".join(pieces) == "ab你好🙂cd"
    assert all("\ufffd" not in p for p in pieces)
    s = TextStream(tok, stop_strings=["好🙂"])
    out = "".join(s.push(i) for i in ids)
    assert out == "ab你" and s.stopped


def test_stream_and_generate_give_text(llama):
    tok = CharTokenizer([chr(ord("a") + i % 26) if i < 26 else chr(0x4e00 + i) for i in range(V)])
    cfg = SampleConfig(max_new_tokens=9, temperature=0)
    text = generate(llama, tok, "abc", cfg)
    assert text == "".join(stream(llama, tok, "abc", cfg))
    assert len(text) == 9
    assert generate_batch(llama, tok, ["abc", "zz"], cfg)[0] == text
