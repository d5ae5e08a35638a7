import pytest
import torch

from glassgpt.errors import ContextLengthError, GlassError
from glassgpt.seq2seq.task import CharVocab, Task, TaskConfig, is_sorted, number_to_words, words_to_number


@pytest.mark.parametrize("n, words", [
    (0, "zero"), (7, "seven"), (13, "thirteen"), (40, "forty"), (47, "forty-seven"), (100, "one hundred"),
    (101, "one hundred one"), (110, "one hundred ten"), (1000, "one thousand"), (1005, "one thousand five"),
    (1947, "one thousand nine hundred forty-seven"), (9999, "nine thousand nine hundred ninety-nine"),
    (20015, "twenty thousand fifteen"), (999999, "nine hundred ninety-nine thousand nine hundred ninety-nine"),
])
def test_number_to_words_by_hand(n, words):
    assert number_to_words(n) == words


def test_words_round_trip_and_are_distinct():
    seen = set()
    for n in list(range(10000)) + list(range(10000, 1_000_000, 997)):
        words = number_to_words(n)
        assert words_to_number(words) == n
        seen.add(words)
    assert len(seen) == 10000 + len(range(10000, 1_000_000, 997))


def test_number_out_of_range_is_an_error():
    with pytest.raises(GlassError, match="999999"):
        number_to_words(1_000_000)


def test_held_out_numbers_never_train():
    task = Task(TaskConfig())
    held = set(task.test_numbers)
    assert held.isdisjoint(task.train_numbers)
    assert held | set(task.train_numbers) == set(range(10000))
    assert min(held) >= 100 and len(held) == int(0.1 * 9900)
    g = torch.Generator().manual_seed(0)
    sampled = task.sample_numbers(3000, g)
    assert held.isdisjoint(sampled)
    assert sum(n < 10 for n in sampled) > 500  # each digit count is equally likely


def test_translation_batch_layout():
    task = Task(TaskConfig())
    src, tgt_in, tgt_out = task.translation_batch([5, 1947])
    sv, tv = task.src_vocab, task.tgt_vocab
    assert src.tolist()[0] == [sv.stoi["5"], sv.pad_id, sv.pad_id, sv.pad_id]
    assert tv.decode(tgt_out[1]) == "one thousand nine hundred forty-seven"
    assert tgt_in[1, 0] == tv.bos_id and torch.equal(tgt_in[1, 1:], tgt_out[1, :-1])  # shifted by one
    assert tgt_out[0, len("five")] == tv.eos_id and (tgt_out[0, len("five") + 1:] == tv.pad_id).all()


def test_words_to_digits_is_the_reverse():
    task = Task(TaskConfig(name="words-to-digits"))
    assert task.pair(42) == ("forty-two", "42")
    assert task.src_ctx == max(len(number_to_words(n)) for n in range(10000))


def test_vocab_errors_name_the_symbols():
    v = CharVocab("0123456789")
    with pytest.raises(GlassError, match=r"'x', 'é'"):
        v.encode("12x4é")
    assert v.decode([v.bos_id, v.stoi["4"], v.stoi["2"], v.eos_id, v.stoi["9"]]) == "42"


def test_too_long_or_empty_input_is_an_error():
    task = Task(TaskConfig())
    with pytest.raises(ContextLengthError, match="at most 4"):
        task.encode_sources(["12345"])
    with pytest.raises(GlassError, match="empty"):
        task.encode_sources([""])


def test_sorted_batches_are_labelled_and_balanced():
    task = Task(TaskConfig(name="sorted"))
    src, labels = task.classification_batch(400, torch.Generator().manual_seed(1))
    texts = [task.src_vocab.decode(row) for row in src.tolist()]
    assert [int(is_sorted(t)) for t in texts] == labels.tolist()
    assert 0.45 <= labels.float().mean() <= 0.55
    assert all(2 <= len(t) <= 12 for t in texts)
    assert is_sorted("1337") and not is_sorted("1373")
