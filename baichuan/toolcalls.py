"""The tool-call format of the Baichuan chat templates: the one definition that the server,
`baichuan chat` and SFT share.

Baichuan's templates have roles for system, user and assistant only, so tools travel as text
(the convention of Hermes / Qwen-style tool models):

- the functions are listed in the system text, after whatever the system message says:

      # Tools
      You may call functions to answer. Their JSON schemas:
      <tools>
      {"name": "get_weather", "description": "...", "parameters": {...}}
      </tools>
      To call functions, reply with nothing but one <tool_call>{"name": ..., "arguments": {...}}</tool_call>
      per call, one per line.

- an assistant turn that calls tools is only those blocks, one per line, JSON laid out as
  Python's json.dumps writes it (and constrained decoding, structured.py, and Jinja's tojson):
  `<tool_call>{"name": "get_weather", "arguments": {"city": "北京"}}</tool_call>`;
- tool results (`role: "tool"`) are a user turn, each result's content as it is in
  `<tool_response>...</tool_response>`, one per line, in the order of the calls; consecutive
  results are one turn.

`plain_messages` turns OpenAI messages (assistant `tool_calls`, `role: "tool"`) into the
system/user/assistant messages every template renders; `parse_calls` reads a reply back.
"""

from __future__ import annotations

import json
import re

from baichuan.errors import BaichuanError

CALL_OPEN, CALL_CLOSE = "<tool_call>", "</tool_call>"
RESULT_OPEN, RESULT_CLOSE = "<tool_response>", "</tool_response>"
NAME = re.compile(r"^[A-Za-z0-9_-]{1,64}$")  # OpenAI's rule for function names
MAX_TOOLS = 128

CALL_BLOCK = re.compile(re.escape(CALL_OPEN) + r"(.*?)" + re.escape(CALL_CLOSE), re.S)


class ToolError(BaichuanError):
    """A bad tool definition or tool message; `field` names where (for the API's `param`)."""

    def __init__(self, message: str, field: str):
        super().__init__(message)
        self.field = field


def check_tools(tools) -> list[dict]:
    """OpenAI `tools` -> [{"name", "description", "parameters"}], each checked."""
    if not isinstance(tools, list) or not 1 <= len(tools) <= MAX_TOOLS:
        raise ToolError(f"'tools' must be a list of 1 to {MAX_TOOLS} tools", "tools")
    functions, names = [], set()
    for i, tool in enumerate(tools):
        where = f"tools[{i}]"
        if not isinstance(tool, dict) or tool.get("type") != "function" or not isinstance(tool.get("function"), dict):
            raise ToolError(f"{where} must be {{\"type\": \"function\", \"function\": {{...}}}}", "tools")
        f = tool["function"]
        name = f.get("name")
        if not isinstance(name, str) or not NAME.match(name):
            raise ToolError(f"{where}.function.name must be 1 to 64 letters, digits, '_' or '-', got {name!r}",
                            "tools")
        if name in names:
            raise ToolError(f"{where}.function.name {name!r} is defined twice", "tools")
        names.add(name)
        description = f.get("description", "")
        if not isinstance(description, str):
            raise ToolError(f"{where}.function.description must be a string", "tools")
        parameters = f.get("parameters", {"type": "object", "properties": {}})
        if not isinstance(parameters, dict) or parameters.get("type", "object") != "object":
            raise ToolError(f"{where}.function.parameters must be a JSON schema of type object", "tools")
        functions.append({"name": name, "description": description, "parameters": parameters})
    return functions


TOOLS_HEAD = "# Tools\nYou may call functions to answer. Their JSON schemas:\n<tools>\n"
TOOLS_TAIL = (f"\n</tools>\nTo call functions, reply with nothing but one {CALL_OPEN}{{\"name\": ..., \"arguments\": "
              f"{{...}}}}{CALL_CLOSE} per call, one per line.")


def tools_prompt(functions: list[dict]) -> str:
    """The system text that lists `functions` (one JSON object each: name, description,
    parameters) and says how to call them."""
    return TOOLS_HEAD + "\n".join(json.dumps(f, ensure_ascii=False) for f in functions) + TOOLS_TAIL


def format_call(name: str, arguments) -> str:
    """One call as the model writes it; `arguments` is an object or its JSON text."""
    if isinstance(arguments, str):
        arguments = json.loads(arguments)
    return CALL_OPEN + json.dumps({"name": name, "arguments": arguments}, ensure_ascii=False) + CALL_CLOSE


def leading_calls(text: str) -> tuple[list[tuple[str, str]], str]:
    """(name, arguments as JSON text) of each whole call block at the start of `text` (one per
    line, each a JSON object with a name and object arguments), and the text after them."""
    calls, end = [], 0
    for m in CALL_BLOCK.finditer(text):
        if text[end:m.start()].strip():
            break
        try:
            call = json.loads(m.group(1))
        except json.JSONDecodeError:
            break
        if not (isinstance(call, dict) and isinstance(call.get("name"), str)
                and isinstance(call.get("arguments"), dict)):
            break
        calls.append((call["name"], json.dumps(call["arguments"], ensure_ascii=False)))
        end = m.end()
    return calls, text[end:]


def parse_calls(text: str) -> list[tuple[str, str]] | None:
    """The calls of `text` when it is a tool-call reply (only call blocks), else None."""
    calls, rest = leading_calls(text)
    return calls if calls and not rest.strip() else None


def _content(m: dict, i: int) -> str:
    content = m.get("content")
    if content is None:
        return ""
    if isinstance(content, list):  # OpenAI content parts: keep the text ones
        content = "".join(p.get("text", "") for p in content if isinstance(p, dict) and p.get("type") == "text")
    if not isinstance(content, str):
        raise ToolError(f"messages[{i}]: content must be a string", "messages")
    return content


def _calls_text(m: dict, i: int) -> str:
    """An assistant message's `tool_calls` as call blocks."""
    calls = m["tool_calls"]
    if not isinstance(calls, list) or not calls:
        raise ToolError(f"messages[{i}].tool_calls must be a non-empty list", "messages")
    lines = []
    for j, call in enumerate(calls):
        f = call.get("function") if isinstance(call, dict) else None
        if not isinstance(f, dict) or not isinstance(f.get("name"), str):
            raise ToolError(f"messages[{i}].tool_calls[{j}] must have function.name", "messages")
        try:
            lines.append(format_call(f["name"], f.get("arguments") or "{}"))
        except (json.JSONDecodeError, TypeError):
            raise ToolError(f"messages[{i}].tool_calls[{j}].function.arguments is not JSON", "messages") from None
    return "\n".join(lines)


def plain_messages(messages, functions: list[dict] | None = None) -> list[dict]:
    """OpenAI chat messages (with `tool_calls` and `role: "tool"`) -> system/user/assistant
    messages with string content, the tools listed in the system text (module docstring). A user
    turn of tool results carries `"tool": True`: it continues the round of the call it answers
    (tokenizer.fit_chat keeps the two together)."""
    if not isinstance(messages, list) or not messages:
        raise ToolError("'messages' must be a non-empty list", "messages")
    out: list[dict] = []
    for i, m in enumerate(messages):
        role = m.get("role") if isinstance(m, dict) else None
        if role not in ("system", "user", "assistant", "tool"):
            raise ToolError(f"messages[{i}]: role must be system, user, assistant or tool", "messages")
        if role == "assistant" and m.get("tool_calls"):
            text = _calls_text(m, i)
        elif role == "tool":
            text = RESULT_OPEN + _content(m, i) + RESULT_CLOSE
            if out and out[-1].get("tool"):  # consecutive results: one user turn
                out[-1]["content"] += "\n" + text
                continue
            out.append({"role": "user", "content": text, "tool": True})
            continue
        else:
            text = _content(m, i)
        out.append({"role": role, "content": text})
    if functions:
        if out[0]["role"] == "system":
            out[0] = {"role": "system", "content": out[0]["content"].rstrip() + "\n\n" + tools_prompt(functions)}
        else:
            out.insert(0, {"role": "system", "content": tools_prompt(functions)})
    return out
