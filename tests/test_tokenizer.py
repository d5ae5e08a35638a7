import json

import pytest
from hypothesis import given, settings, strategies as st

from glassgpt.errors import GlassError
from glassgpt.tokenizer import BPETokenizer, CharTokenizer, hf_from_json, load_tokenizer

CORPUS = ["the cat sat on the mat. the cats sat on the mats.", "春眠不觉晓，处处闻啼鸟。", "def f(x):\n    return x * 2\n"] * 20


_BPE = BPETokenizer.train(CORPUS, vocab_size=400)


@pytest.fixture
def bpe() -> BPETokenizer:
    return _BPE


@settings(max_examples=300, deadline=None)
@given(st.text())
def test_byte_level_bpe_round_trips_any_unicode(text):
    tok = _BPE
    assert tok.decode(tok.encode(text)) == text


@pytest.mark.parametrize("text", ["", "你好，世界", "🙂👍🏽 emoji", "\x00\x01\t\r\n\x7f", "  leading and trailing  ",
                                  "<|endoftext|> in text", "é vs é (combining)", "\ud7ff\ue000\U0010ffff"])
def test_byte_level_bpe_round_trips_hard_cases(bpe, text):
    assert bpe.decode(bpe.encode(text)) == text


def test_bpe_learns_merges_from_the_corpus(bpe):
    assert len(bpe.encode("the cats sat on the mats.")) < len("the cats sat on the mats.".encode())
    assert bpe.special_tokens == {"<|endoftext|>": 0}
    assert bpe.eos_id == 0
    assert 256 < bpe.vocab_size <= 400


def test_bpe_saves_and_loads_the_same_tokenizer(bpe, tmp_path):
    bpe.save(tmp_path)
    again = load_tokenizer(tmp_path)
    assert isinstance(again, BPETokenizer)
    for text in CORPUS[:3]:
        assert again.encode(text) == bpe.encode(text)
    assert again.vocab_size == bpe.vocab_size


def test_char_tokenizer_round_trips_and_names_unknown_characters(tmp_path):
    tok = CharTokenizer.from_text("hello world")
    assert tok.vocab_size == len(set("hello world"))
    assert tok.decode(tok.encode("low hello")) == "low hello"
    assert tok.encode("d e") == [tok.stoi["d"], tok.stoi[" "], tok.stoi["e"]]
    with pytest.raises(GlassError, match=r"2 character\(s\).*'x'.*'z'"):
        tok.encode("hello xz")
    tok.save(tmp_path)
    assert load_tokenizer(tmp_path).chars == tok.chars


def test_char_tokenizer_keeps_chinese_characters():
    text = "床前明月光，疑是地上霜。"
    tok = CharTokenizer.from_text(text)
    assert tok.decode(tok.encode(text)) == text and tok.vocab_size == len(set(text))


def test_corrupt_tokenizer_files_give_clear_errors(tmp_path):
    (tmp_path / "tokenizer.json").write_text("{ not json")
    with pytest.raises(GlassError, match="tokenizer.json"):
        load_tokenizer(tmp_path)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(GlassError, match="no tokenizer"):
        load_tokenizer(empty)
    (tmp_path / "char_tokenizer.json").write_text('{"kind": "char"}')
    with pytest.raises(GlassError, match="char_tokenizer.json"):
        load_tokenizer(tmp_path / "char_tokenizer.json")


def test_too_small_bpe_vocabulary_is_refused():
    with pytest.raises(GlassError, match="at least 257"):
        BPETokenizer.train(["abc"], vocab_size=100)


def _hf_bpe_variants(bpe: BPETokenizer):
    """Hugging Face tokenizers to rebuild: the trained one plus a special token added after its vocabulary (an
    added token whose id no merge gives), and a BPE model with non-default settings."""
    from tokenizers import Tokenizer as HFTokenizer, models

    added = HFTokenizer.from_str(bpe.tok.to_str())
    added.add_special_tokens(["<|end_of_turn|>"])
    assert added.token_to_id("<|end_of_turn|>") == bpe.tok.get_vocab_size()  # past the vocabulary
    vocab = added.get_vocab(with_added_tokens=False)
    merges = [tuple(m) for m in json.loads(added.to_str())["model"]["merges"]]
    options = HFTokenizer(models.BPE(vocab, merges, unk_token="<|endoftext|>", fuse_unk=True, byte_fallback=True,
                                     ignore_merges=True))
    return [bpe.tok, added, options]


def test_the_lean_json_build_gives_the_tokenizer_from_str_gives(bpe):
    """hf_from_json builds a BPE model from Python's parse of its vocabulary and merges (less resident memory
    than from_str's own parse, benchmarks/memory.py): the result serialises to the very same JSON and encodes
    and decodes the same, added tokens included (they keep their ids, even past the vocabulary)."""
    from tokenizers import Tokenizer as HFTokenizer

    text = "Hello there, the theory of everything — 12345 中文 <|end_of_turn|> def f(x):\n\treturn x ** 2<|endoftext|>"
    for tok in _hf_bpe_variants(bpe):
        spec = tok.to_str()
        ours, theirs = hf_from_json(spec), HFTokenizer.from_str(spec)
        assert ours.to_str() == theirs.to_str() == spec
        assert ours.encode(text).ids == theirs.encode(text).ids
        ids = theirs.encode(text).ids
        assert ours.decode(ids, skip_special_tokens=False) == theirs.decode(ids, skip_special_tokens=False)


def test_a_tokenizer_json_with_merges_as_strings_still_loads(bpe):
    """Older tokenizer.json files write merges as "a b" strings: those go to from_str whole."""
    spec = json.loads(bpe.tok.to_str())
    spec["model"]["merges"] = [" ".join(m) for m in spec["model"]["merges"]]
    tok = hf_from_json(json.dumps(spec))
    assert tok.encode("the theory").ids == bpe.tok.encode("the theory").ids
