"""A tool-calling loop with the official openai client against `baichuan serve`.

The model sees the tools, answers with calls (their arguments constrained to each tool's JSON
schema by the server), this script runs them and sends the results back, until the model answers
in text. Start a server, then run this:

    baichuan serve runs/speedrun/sft/model --api-key sk-local &
    python examples/tool_calling.py --base-url http://127.0.0.1:8000/v1 --api-key sk-local "北京今天天气怎么样？"

`--first-choice required` makes the first reply a call, whatever the model would rather do.
"""

from __future__ import annotations

import argparse
import ast
import json
import operator

TOOLS = [
    {"type": "function", "function": {
        "name": "get_weather", "description": "查询城市今天的天气",
        "parameters": {"type": "object", "properties": {"city": {"type": "string", "maxLength": 20}},
                       "required": ["city"]}}},
    {"type": "function", "function": {
        "name": "calculate", "description": "计算算式",
        "parameters": {"type": "object", "properties": {"expression": {"type": "string", "maxLength": 60}},
                       "required": ["expression"]}}},
]

_OPS = {ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul, ast.Div: operator.truediv,
        ast.USub: operator.neg, ast.UAdd: operator.pos}


def calculate(expression: str) -> str:
    """Arithmetic (+ - * / and parentheses) read with `ast`, never `eval`: the model's text is input."""
    def value(node):
        if isinstance(node, ast.Constant) and isinstance(node.value, (int, float)):
            return node.value
        if isinstance(node, ast.BinOp) and type(node.op) in _OPS:
            return _OPS[type(node.op)](value(node.left), value(node.right))
        if isinstance(node, ast.UnaryOp) and type(node.op) in _OPS:
            return _OPS[type(node.op)](value(node.operand))
        raise ValueError("only numbers, + - * / and parentheses")
    try:
        return str(value(ast.parse(expression.replace("×", "*").replace("÷", "/"), mode="eval").body))
    except (SyntaxError, ValueError, ZeroDivisionError) as e:
        return f"error: {e}"


def get_weather(city: str) -> str:
    return json.dumps({"city": city, "weather": "晴", "temp_c": 25}, ensure_ascii=False)  # a stand-in service


FUNCTIONS = {"get_weather": get_weather, "calculate": calculate}


def run_call(call) -> str:
    try:
        return FUNCTIONS[call.function.name](**json.loads(call.function.arguments))
    except (KeyError, TypeError, json.JSONDecodeError) as e:
        return f"error: {e}"


def main(argv=None) -> str:
    from openai import OpenAI
    ap = argparse.ArgumentParser(description="a tool-calling loop against baichuan serve")
    ap.add_argument("question", nargs="?", default="北京今天天气怎么样？")
    ap.add_argument("--base-url", default="http://127.0.0.1:8000/v1")
    ap.add_argument("--api-key", default="sk-local")
    ap.add_argument("--model", default=None, help="default: the server's only model")
    ap.add_argument("--first-choice", default="auto", help="tool_choice of the first reply: auto or required")
    ap.add_argument("--rounds", type=int, default=4, help="most rounds of calls before giving up")
    args = ap.parse_args(argv)
    client = OpenAI(base_url=args.base_url, api_key=args.api_key)
    model = args.model or client.models.list().data[0].id
    messages = [{"role": "user", "content": args.question}]
    for round_ in range(args.rounds):
        reply = client.chat.completions.create(model=model, messages=messages, tools=TOOLS, max_tokens=256,
                                               tool_choice=args.first_choice if round_ == 0 else "auto")
        message = reply.choices[0].message
        if not message.tool_calls:
            print(f"assistant: {message.content}")
            return message.content
        messages.append(message.model_dump(exclude_none=True))
        for call in message.tool_calls:
            result = run_call(call)
            print(f"tool {call.function.name}({call.function.arguments}) -> {result}")
            messages.append({"role": "tool", "tool_call_id": call.id, "content": result})
    print(f"no text answer after {args.rounds} rounds of calls")
    return ""


if __name__ == "__main__":
    main()
