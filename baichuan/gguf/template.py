"""The chat formats of `baichuan.tokenizer` (build_chat_input_v2 / _v1) as the templates other
tools render: Jinja for GGUF's `tokenizer.chat_template` (llama.cpp, LM Studio; HF's
`apply_chat_template` renders the same) and Go text/template for an Ollama Modelfile.

The role markers are written as their pieces (e.g. <reserved_106>): those are user-defined
tokens, which llama.cpp splits out of the text before tokenizing, and each stretch of text between
them is tokenized on its own, as our builders encode each message. Both templates lay out every
message; trimming old rounds to the context is left to the tool.
"""

from __future__ import annotations

from baichuan.config import ASSISTANT_TOKEN_ID, USER_TOKEN_ID
from baichuan.tokenizer import Tokenizer, chat_template_for

# Baichuan2-Chat: an optional system prompt first, then each message after its role marker (any
# role but user gets the assistant's), then the assistant's marker unless the last message is one.
_JINJA_BAICHUAN2 = (
    "{%- for message in messages -%}"
    "{%- if message['role'] == 'system' -%}"
    "{%- if not loop.first -%}{{ raise_exception('a system message is only allowed first') }}{%- endif -%}"
    "{{ message['content'] }}"
    "{%- elif message['role'] == 'user' -%}{{ USER }}{{ message['content'] }}"
    "{%- else -%}{{ ASSISTANT }}{{ message['content'] }}"
    "{%- endif -%}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt and messages[-1]['role'] != 'assistant' -%}{{ ASSISTANT }}{%- endif -%}"
)

# Baichuan-13B-Chat: user and assistant only; assistant turns before the first user turn are
# dropped (as its builder does); the assistant's marker always ends the prompt.
_JINJA_BAICHUAN = (
    "{%- set state = namespace(user_seen=false) -%}"
    "{%- for message in messages -%}"
    "{%- if message['role'] == 'user' -%}{%- set state.user_seen = true -%}{{ USER }}{{ message['content'] }}"
    "{%- elif message['role'] == 'assistant' -%}{%- if state.user_seen -%}{{ ASSISTANT }}{{ message['content'] }}"
    "{%- endif -%}"
    "{%- else -%}{{ raise_exception('Baichuan-13B-Chat has only user and assistant messages') }}"
    "{%- endif -%}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}{{ ASSISTANT }}{%- endif -%}"
)

_OLLAMA = (
    "{{- range .Messages }}"
    "{{- if eq .Role \"system\" }}{{ .Content }}"
    "{{- else if eq .Role \"user\" }}USER{{ .Content }}"
    "{{- else }}ASSISTANT{{ .Content }}"
    "{{- end }}"
    "{{- end }}ASSISTANT"
)


def role_pieces(tok: Tokenizer) -> tuple[str, str]:
    return tok.piece(USER_TOKEN_ID), tok.piece(ASSISTANT_TOKEN_ID)


def jinja_chat_template(tok: Tokenizer) -> str:
    user, assistant = role_pieces(tok)
    text = _JINJA_BAICHUAN2 if chat_template_for(tok) == "baichuan2" else _JINJA_BAICHUAN
    return text.replace("{{ USER }}", user).replace("{{ ASSISTANT }}", assistant)


def ollama_template(tok: Tokenizer) -> str:
    user, assistant = role_pieces(tok)
    return _OLLAMA.replace("USER", user).replace("ASSISTANT", assistant)
