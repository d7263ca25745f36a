"""The chat formats of `baichuan.tokenizer` (build_chat_input_v2 / _v1) as the templates other
tools render: Jinja for GGUF's `tokenizer.chat_template` (llama.cpp, LM Studio; HF's
`apply_chat_template` renders the same) and Go text/template for an Ollama Modelfile.

The role markers are written as their pieces (e.g. <reserved_106>): those are user-defined
tokens, which llama.cpp splits out of the text before tokenizing, and each stretch of text between
them is tokenized on its own, as our builders encode each message. Both templates lay out every
message; trimming old rounds to the context is left to the tool.
"""

from __future__ import annotations

import json

from baichuan.config import ASSISTANT_TOKEN_ID, USER_TOKEN_ID
from baichuan.tokenizer import Tokenizer, chat_template_for
from baichuan.toolcalls import CALL_CLOSE, CALL_OPEN, RESULT_CLOSE, RESULT_OPEN, TOOLS_HEAD, TOOLS_TAIL

# Baichuan2-Chat: an optional system prompt first, then each message after its role marker (any
# role but user gets the assistant's), then the assistant's marker unless the last message is one.
# With `tools` (HF apply_chat_template's argument), toolcalls.py's format: the functions after the
# system text, assistant `tool_calls` as <tool_call> blocks, `tool` messages as one user turn of
# <tool_response> blocks. A call's `arguments` given as a string is written as it is.
_JINJA_BAICHUAN2 = (
    "{%- set ns = namespace(tools='') -%}"
    "{%- if tools -%}"
    "{%- for tool in tools -%}"
    "{%- set f = tool['function'] if tool['function'] is defined else tool -%}"
    "{%- set entry = {'name': f['name'], 'description': f['description'] if f['description'] is defined else '', "
    "'parameters': f['parameters'] if f['parameters'] is defined else {'type': 'object', 'properties': {}}} -%}"
    "{%- set ns.tools = ns.tools + ('' if loop.first else '\\n') + (entry | tojson) -%}"
    "{%- endfor -%}"
    "{%- set ns.tools = TOOLS_HEAD + ns.tools + TOOLS_TAIL -%}"
    "{%- endif -%}"
    "{%- for message in messages -%}"
    "{%- if message['role'] == 'system' -%}"
    "{%- if not loop.first -%}{{ raise_exception('a system message is only allowed first') }}{%- endif -%}"
    "{%- if tools -%}{{ message['content'].rstrip() + '\\n\\n' + ns.tools }}"
    "{%- else -%}{{ message['content'] }}{%- endif -%}"
    "{%- else -%}"
    "{%- if loop.first and tools -%}{{ ns.tools }}{%- endif -%}"
    "{%- if message['role'] == 'user' -%}{{ USER }}{{ message['content'] }}"
    "{%- elif message['role'] == 'tool' -%}"
    "{%- if loop.previtem is defined and loop.previtem['role'] == 'tool' -%}{{ '\\n' }}"
    "{%- else -%}{{ USER }}{%- endif -%}"
    "{{ RESULT_OPEN }}{{ message['content'] }}{{ RESULT_CLOSE }}"
    "{%- elif message['tool_calls'] is defined and message['tool_calls'] -%}{{ ASSISTANT }}"
    "{%- for call in message['tool_calls'] -%}"
    "{%- set f = call['function'] if call['function'] is defined else call -%}"
    "{%- if not loop.first -%}{{ '\\n' }}{%- endif -%}"
    "{%- if f['arguments'] is string -%}{{ CALL_OPEN }}{\"name\": {{ f['name'] | tojson }}, \"arguments\": "
    "{{ f['arguments'] }}}{{ CALL_CLOSE }}"
    "{%- else -%}{{ CALL_OPEN }}{{ {'name': f['name'], 'arguments': f['arguments']} | tojson }}{{ CALL_CLOSE }}"
    "{%- endif -%}"
    "{%- endfor -%}"
    "{%- else -%}{{ ASSISTANT }}{{ message['content'] }}"
    "{%- endif -%}"
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
    text = text.replace("{{ USER }}", user).replace("{{ ASSISTANT }}", assistant)
    for name, value in (("CALL_OPEN", CALL_OPEN), ("CALL_CLOSE", CALL_CLOSE), ("RESULT_OPEN", RESULT_OPEN),
                        ("RESULT_CLOSE", RESULT_CLOSE)):
        text = text.replace("{{ " + name + " }}", value)
    return text.replace("TOOLS_HEAD", json.dumps(TOOLS_HEAD)).replace("TOOLS_TAIL", json.dumps(TOOLS_TAIL))


def ollama_template(tok: Tokenizer) -> str:
    user, assistant = role_pieces(tok)
    return _OLLAMA.replace("USER", user).replace("ASSISTANT", assistant)
