"""Chat sessions and the chat / generate commands, on a tiny synthetic GGUF model (fast)."""

from __future__ import annotations

import io
from dataclasses import replace

import pytest

from glassgpt.chat import PLAIN_TEMPLATE, Chat, render
from glassgpt.cli import main
from glassgpt.load import load_gguf
from glassgpt.errors import GlassError
from glassgpt.generate import SampleConfig, generate
from gguf_synth import TEMPLATE, tiny_model, write_gguf

GREEDY = SampleConfig(max_new_tokens=6, temperature=0)


@pytest.fixture(scope="module")
def gguf_file(tmp_path_factory):
    return write_gguf(tmp_path_factory.mktemp("chat") / "tiny.gguf", tiny_model(seed=1))


@pytest.fixture
def loaded(gguf_file):
    return load_gguf(gguf_file)


def test_template_renders_like_transformers(gguf_file):
    from transformers import AutoTokenizer

    hf = AutoTokenizer.from_pretrained(gguf_file.parent, gguf_file=gguf_file.name)
    messages = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "hi"},
                {"role": "assistant", "content": "hello"}, {"role": "user", "content": "and then?"}]
    for gen in (True, False):
        ours = render(TEMPLATE, messages, add_generation_prompt=gen)
        assert ours == hf.apply_chat_template(messages, tokenize=False, add_generation_prompt=gen)


def test_templates_run_sandboxed():
    evil = "{{ ''.__class__.__mro__[1].__subclasses__() }}"
    with pytest.raises(GlassError, match="chat template"):
        render(evil, [])
    with pytest.raises(GlassError, match="no system"):
        render("{{ raise_exception('no system') }}", [])


def test_system_prompt_is_the_initial_context(loaded):
    chat = Chat(loaded, system="You are terse.", sample=GREEDY)
    chat.messages.append({"role": "user", "content": "hi"})
    text = chat.prompt_text()
    assert text.startswith("<|im_start|>system\nYou are terse.<|im_end|>\n<|im_start|>user\nhi")
    assert text.endswith("<|im_start|>assistant\n")


def test_answer_is_greedy_generation_from_the_rendered_prompt(loaded):
    chat = Chat(loaded, system="S", sample=GREEDY)
    prompt = Chat(loaded, system="S", messages=[{"role": "user", "content": "the tan"}]).prompt_text()
    expected = generate(loaded.model, loaded.tokenizer, prompt, replace(GREEDY, stop_ids=tuple(loaded.stop_ids)))
    assert chat.reply("the tan") == expected
    assert chat.messages == [{"role": "user", "content": "the tan"}, {"role": "assistant", "content": expected.strip()}]


def test_oldest_turns_are_dropped_to_fit_the_context_window(loaded):
    notices = []
    chat = Chat(loaded, system="keep me", sample=replace(GREEDY, max_new_tokens=4), on_notice=notices.append)
    n_ctx = loaded.model.cfg.n_ctx
    for i in range(12):
        chat.reply(f"message {i} " + "an " * 6)
        ids = loaded.tokenizer.encode(chat.prompt_text(chat.messages[:-1]))  # the prompt this answer came from
        assert len(ids) + 4 <= n_ctx
    assert notices and "dropped the oldest" in notices[0] and str(n_ctx) in notices[0]
    assert chat.messages[0]["role"] == "user" and "message 0" not in chat.messages[0]["content"]
    assert chat.messages[-2]["content"].startswith("message 11")
    assert "keep me" in chat.prompt_text()


def test_a_message_longer_than_the_window_is_refused_and_forgotten(loaded):
    chat = Chat(loaded, sample=GREEDY)
    with pytest.raises(GlassError, match="context window holds 128"):
        chat.reply("an " * 300)
    assert chat.messages == []


def test_stopping_an_answer_keeps_what_was_said(loaded):
    chat = Chat(loaded, sample=replace(GREEDY, max_new_tokens=20, stop_ids=()))
    chat.loaded.stop_ids = []
    reply = chat.ask("hello")
    first = next(reply)
    reply.close()  # what the CLI does on Ctrl-C
    assert chat.messages[-1] == {"role": "assistant", "content": first.strip()}


def test_models_without_a_template_get_plain_turns(loaded):
    loaded.chat_template = None
    chat = Chat(loaded, system="sys")
    chat.messages.append({"role": "user", "content": "hi"})
    assert chat.prompt_text() == render(PLAIN_TEMPLATE, chat.context()) == "System: sys\nUser: hi\nAssistant:"


# ----------------------------------------------------------------------------- the commands


def test_chat_command_line_by_line(gguf_file, loaded, monkeypatch, capsys):
    q = "the tan in"
    expected = Chat(loaded, sample=GREEDY).reply(q)
    stdin = f"{q}\n/temp 0.5\n/temp 0\n/reset\n{q}\n/system be nice\n/temp x\n/quit\nnever read\n"
    monkeypatch.setattr("sys.stdin", io.StringIO(stdin))
    assert main(["chat", "--model", str(gguf_file), "--weights", "fp32", "--temperature", "0", "--max-new-tokens", "6"]) == 0
    out, err = capsys.readouterr()
    assert out == f"{expected}\n{expected}\n"  # after /reset the same question gets the same answer
    assert "[temperature 0.5]" in err and "[conversation cleared]" in err and "system prompt set" in err
    assert "/temp needs a number" in err


def test_generate_prints_only_the_answer(gguf_file, loaded, capsys):
    cfg = SampleConfig(max_new_tokens=7, temperature=0, stop_ids=tuple(loaded.stop_ids))
    assert main(["generate", "the tan", "--model", str(gguf_file), "--weights", "fp32", "--temperature", "0",
                 "--max-new-tokens", "7"]) == 0
    out, err = capsys.readouterr()
    assert out == generate(loaded.model, loaded.tokenizer, "the tan", cfg) + "\n"
    assert err == ""
    assert main(["generate", "the tan", "--chat", "--model", str(gguf_file), "--weights", "fp32",
                 "--temperature", "0", "--max-new-tokens", "7"]) == 0
    prompt = Chat(loaded, messages=[{"role": "user", "content": "the tan"}]).prompt_text()
    assert capsys.readouterr().out == generate(loaded.model, loaded.tokenizer, prompt, cfg) + "\n"


def test_generate_refuses_a_prompt_longer_than_the_window(gguf_file, loaded, capsys):
    prompt = "an " * 200
    assert main(["generate", prompt, "--model", str(gguf_file)]) == 1
    err = capsys.readouterr().err.strip()
    n = len(loaded.tokenizer.encode(prompt))
    assert len(err.splitlines()) == 1 and f"{n} tokens" in err and "holds 128" in err


def test_bad_sampling_option_is_one_line(gguf_file, capsys):
    assert main(["generate", "x", "--model", str(gguf_file), "--top-p", "1.5"]) == 2  # a usage error
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "--top-p" in err and "1.5" in err


def _fed_lengths(model):
    """Record how many tokens each forward pass of model is fed."""
    seen = []
    original = model.forward

    def forward(tokens, *a, **kw):
        seen.append(tokens.shape[-1])
        return original(tokens, *a, **kw)

    model.forward = forward
    return seen


def test_later_turns_reuse_the_kv_cache_and_answer_as_a_fresh_session(loaded, gguf_file):
    turns = ["the tan", "in the", "and then the"]  # (a fourth would drop the first from the 128-token window)
    sample = replace(GREEDY, max_new_tokens=5)
    chat = Chat(loaded, system="S", sample=sample)
    seen = _fed_lengths(loaded.model)
    previous = 0  # tokens in the previous turn's prompt
    for text in turns:
        before = len(seen)
        answer = chat.reply(text)
        prefill = seen[before]
        full = len(loaded.tokenizer.encode(chat.prompt_text(chat.messages[:-1])))  # the whole prompt of this turn
        fresh = Chat(load_gguf(gguf_file), system="S", sample=sample, messages=chat.messages[:-2], reuse_cache=False)
        assert fresh.reply(text) == answer  # the same answer as a session that recomputes everything
        # at least the previous turn's whole prompt came from the cache (the random model's answers are
        # stray bytes that re-tokenise differently, so its answer tokens may not)
        assert full - prefill >= previous
        assert (prefill == full) == (previous == 0)
        previous = full


def test_a_changed_history_recomputes_from_where_it_differs(loaded):
    chat = Chat(loaded, system="S", sample=GREEDY)
    chat.reply("the tan")
    chat.set_system("a longer system prompt")
    seen = _fed_lengths(loaded.model)
    chat.reply("in the")
    full = len(loaded.tokenizer.encode(chat.prompt_text(chat.messages[:-1])))
    opening = len(loaded.tokenizer.encode("<|im_start|>system\n"))  # the same in both prompts
    assert seen[0] == full - opening
