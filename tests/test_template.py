"""Chat templates render as transformers renders them (its own renderer is the oracle), sandboxed and bounded."""

from __future__ import annotations

import time

import pytest

from glassgpt.template import TemplateError, TemplateLimitError, render

CHAT = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "What is 2+2? «é»"},
        {"role": "assistant", "content": "4"}, {"role": "user", "content": "And 3+3?"}]
TOOLS = [{"type": "function", "function": {"name": "add", "description": "Add two numbers",
                                           "parameters": {"type": "object", "properties": {"a": {"type": "number"}}}}}]

# Template shapes from well-known model families, written here (not copied): what each exercises is named.
SHAPES = {
    "chatml with default system": (
        "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}"
        "{{ '<|im_start|>system\nYou are helpful.<|im_end|>\n' }}{% endif %}"
        "{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}{% endfor %}"
        "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"),
    "llama-3 header with bos and date": (
        "{{ bos_token }}{% set date = strftime_now('%d %b %Y') %}"
        "{% if messages[0]['role'] == 'system' %}{% set system = messages[0]['content'] %}"
        "{% set messages = messages[1:] %}{% else %}{% set system = '' %}{% endif %}"
        "<|start_header_id|>system<|end_header_id|>\n\nToday Date: {{ date }}\n\n{{ system }}<|eot_id|>"
        "{% for m in messages %}<|start_header_id|>{{ m['role'] }}<|end_header_id|>\n\n{{ m['content'] | trim }}"
        "<|eot_id|>{% endfor %}{% if add_generation_prompt %}<|start_header_id|>assistant<|end_header_id|>\n\n"
        "{% endif %}"),
    "mistral alternation check": (
        "{{ bos_token }}{% for message in messages %}"
        "{% if message['role'] == 'system' %}{% continue %}{% endif %}"
        "{% if (message['role'] == 'user') != (loop.index0 % 2 == 1) %}"
        "{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}{% endif %}"
        "{% if message['role'] == 'user' %}{{ '[INST] ' + message['content'] + ' [/INST]' }}"
        "{% else %}{{ message['content'] + eos_token }}{% endif %}{% endfor %}"),
    "tools as json with namespace": (
        "{% set ns = namespace(found=false) %}{% for m in messages %}{% if m['role'] == 'system' %}"
        "{% set ns.found = true %}{% endif %}{% endfor %}"
        "{% if tools %}<tools>\n{% for t in tools %}{{ t | tojson(indent=2) }}\n{% endfor %}</tools>\n{% endif %}"
        "system found: {{ ns.found }}\n{% for m in messages %}{{ m.role }}: {{ m.content | tojson }}\n{% endfor %}"),
    "break after the first user turn": (
        "{% for m in messages %}{% if m['role'] == 'user' %}first user: {{ m['content'] }}{% break %}{% endif %}"
        "{% endfor %}"),
    "generation block": (
        "{% for m in messages %}{% if m['role'] == 'assistant' %}{% generation %}{{ m['content'] }}{% endgeneration %}"
        "{% else %}{{ m['content'] }}{% endif %}\n{% endfor %}"),
    "whitespace control": (
        "{%- for m in messages -%}\n  {{- m['role'] -}}\n  :\n  {{ m['content'] }}\n{% endfor -%}\n"
        "{%- if add_generation_prompt %}\nassistant:{% endif %}"),
}


def transformers_render(template: str, messages, **kw) -> str:
    from transformers.utils.chat_template_utils import render_jinja_template

    rendered, _ = render_jinja_template([messages], chat_template=template, **kw)
    return rendered[0]


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("gen", [True, False])
def test_template_shapes_render_as_transformers_renders_them(shape, gen):
    kw = dict(add_generation_prompt=gen, bos_token="<s>", eos_token="</s>", tools=TOOLS)
    ours = render(SHAPES[shape], CHAT, **kw)
    assert ours == transformers_render(SHAPES[shape], CHAT, **kw)
    assert ours.strip()


@pytest.fixture(scope="module")
def smollm2_template():
    from glassgpt.convert.gguf import default_gguf_path, metadata, read_gguf

    return metadata(read_gguf(default_gguf_path()))["tokenizer.chat_template"]


@pytest.mark.parametrize("messages", [CHAT, CHAT[1:], CHAT[1:2]])
def test_smollm2_template_renders_as_transformers_renders_it(smollm2_template, messages):
    for gen in (True, False):
        ours = render(smollm2_template, messages, add_generation_prompt=gen)
        assert ours == transformers_render(smollm2_template, messages, add_generation_prompt=gen)
    assert ours.count("<|im_start|>") == len(messages) + (messages[0]["role"] != "system")  # its default system


def test_raise_exception_is_a_one_line_error_with_the_templates_message():
    bad = [{"role": "user", "content": "a"}, {"role": "user", "content": "b"}]
    with pytest.raises(TemplateError, match="must alternate") as e:
        render(SHAPES["mistral alternation check"], bad, bos_token="", eos_token="")
    assert "\n" not in str(e.value)


def test_the_sandbox_holds():
    with pytest.raises(TemplateError):
        render("{{ ''.__class__.__mro__[1].__subclasses__() }}", [])
    with pytest.raises(TemplateError):
        render("{% set ns = namespace() %}{% set ns._x = 1 %}", [])
    with pytest.raises(TemplateError):  # immutable: the caller's messages cannot be changed
        render("{{ messages.append(1) }}", [])


BOMBS = {
    "nested loops that print nothing": "{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}",
    "output past the size limit": "{% for i in range(100000) %}{{ 'x' * 20 }}{% endfor %}",
    "a huge repetition": "{{ 'x' * 10 ** 9 }}",
    "a string doubled in a namespace": "{% set ns = namespace(s='ab') %}{% for i in range(64) %}{% set ns.s = ns.s ~ ns.s %}"
                                       "{% endfor %}",
    "a list doubled in a namespace": "{% set ns = namespace(s=[1]) %}{% for i in range(64) %}{% set ns.s = ns.s + ns.s %}"
                                     "{% endfor %}",
    "a huge power": "{% set n = 10 %}{{ n ** 100000000 }}",
    "endless recursion": "{% macro f() %}{{ f() }}{% endmacro %}{{ f() }}",
}


@pytest.mark.parametrize("bomb", BOMBS)
def test_runaway_templates_stop_at_a_limit_with_a_clear_error(bomb):
    start = time.monotonic()
    with pytest.raises(TemplateLimitError, match="limit|too deeply|too large") as e:
        render(BOMBS[bomb], [], max_seconds=1.0)
    assert time.monotonic() - start < 5  # the 1 s limit, plus the machine being shared
    assert "\n" not in str(e.value)


def test_limits_leave_ordinary_templates_alone(smollm2_template):
    long_chat = [{"role": "user" if i % 2 == 0 else "assistant", "content": "word " * 2000} for i in range(20)]
    out = render(smollm2_template, long_chat, max_seconds=1.0)
    assert len(out) > 200_000 and out == transformers_render(smollm2_template, long_chat, add_generation_prompt=True)
    with pytest.raises(TemplateLimitError, match="100,000 characters"):
        render(smollm2_template, long_chat, max_chars=100_000)


def test_generate_command_reports_a_runaway_template_in_one_line(tmp_path, capsys):
    from glassgpt.cli import main
    from gguf_synth import tiny_model, write_gguf

    path = write_gguf(tmp_path / "bomb.gguf", tiny_model(), template=BOMBS["nested loops that print nothing"])
    start = time.monotonic()
    assert main(["generate", "hi", "--chat", "--model", str(path), "--max-new-tokens", "2"]) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "chat template ran past the limit" in err
    assert time.monotonic() - start < 15
