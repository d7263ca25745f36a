"""The commands that run a model directory: `generate`, `chat`, `serve` and `info`.

Each command is a pair, `add_<name>_arguments(parser)` and `run_<name>(args)`, listed in cli.py's
table. Nothing heavy is imported until a command runs, so `--help` answers at once.
"""

from __future__ import annotations

import argparse
import json
import dataclasses
import os
import sys
from pathlib import Path

from baichuan.errors import BaichuanError, bounded
from baichuan.flags import add_device_arguments


def _add_sampling(p) -> None:
    g = p.add_argument_group("sampling (defaults: the model's generation_config.json)")
    g.add_argument("--max-new-tokens", type=int, help="longest reply (default: the model's, at most half the "
                                                        "context in chat)")
    g.add_argument("--temperature", type=bounded(float, 0), help="0 = greedy; a positive value samples")
    g.add_argument("--top-k", type=int, help="sample among the k likeliest tokens")
    g.add_argument("--top-p", type=float, help="nucleus sampling threshold")
    g.add_argument("--repetition-penalty", type=float, help="HF-style penalty on tokens already in the text")
    g.add_argument("--greedy", action="store_true", help="argmax decoding (the same as --temperature 0)")
    g.add_argument("--stop", action="append", help="stop string (repeatable)")
    g.add_argument("--seed", type=int, help="seed for sampling (the same seed gives the same reply)")
    add_device_arguments(p)


def _sampling(args, tok, room: int | None = None):
    from baichuan.config import load_generation_config
    from baichuan.infer.sampling import SamplingParams
    gen = load_generation_config(args.model)
    return SamplingParams.from_request(
        gen, tok.stop_ids, max_new_tokens=args.max_new_tokens, room=room,
        temperature=0.0 if args.greedy else args.temperature, top_k=args.top_k, top_p=args.top_p,
        repetition_penalty=args.repetition_penalty, stop=args.stop, seed=args.seed)


def _banner(model, engine) -> str:
    """What generate and chat run with: the model, and how its engine decodes."""
    return f"{model.cfg.describe()} | {engine.describe()}"


# ------------------------------------------------------------------------------------ generate

def add_generate_arguments(p) -> None:
    p.add_argument("model", help="model directory")
    p.add_argument("prompt", help="text to continue")
    p.add_argument("--compile", action=argparse.BooleanOptionalAction,
                   help="compile the decode step (default: on a CPU for models under 1 GB and 1024 or more new "
                        "tokens, where the faster steps win back a compile read from inductor's cache)")
    _add_sampling(p)


def run_generate(args) -> None:
    from baichuan.generate import stream_text
    from baichuan.runtime import load_model_and_tokenizer, ready_engine
    model, tok = load_model_and_tokenizer(args.model, args.device, args.dtype)
    params = _sampling(args, tok)
    ids = tok.encode_prompt(args.prompt)
    room = model.cfg.max_len - len(ids)
    if args.max_new_tokens and args.max_new_tokens > room > 0:
        print(f"note: the {model.cfg.max_len}-token context leaves room for {room} new tokens", file=sys.stderr)
    engine = None
    if room > 0:  # (else generate_ids says the prompt is too long)
        new = min(params.max_new_tokens, room)
        # a power of two: a compiled step's cache size is part of its graph, so prompts of any
        # length within a bucket share what inductor cached
        bucket = min(model.cfg.max_len, 1 << (len(ids) + new).bit_length())
        engine = ready_engine(model, args.compile, [params], lambda text: print(text, file=sys.stderr, flush=True),
                              new_tokens=new, max_batch=1, max_len=bucket)
        print(_banner(model, engine), file=sys.stderr)
    for piece in stream_text(model, tok, ids, params, engine):
        print(piece, end="", flush=True)
    print()


# ---------------------------------------------------------------------------------------- chat

def add_chat_arguments(p) -> None:
    p.add_argument("model", help="chat model directory")
    p.add_argument("--system", help="system text (the baichuan2 and jinja templates)")
    p.add_argument("--template", choices=["baichuan", "baichuan2", "jinja"],
                   help="default: the tokenizer's own chat_template (jinja) if it has one, else by its vocabulary")
    p.add_argument("--compile", action=argparse.BooleanOptionalAction,
                   help="compile the decode step once for the session (default: on a CPU for models under 1 GB, "
                        "where it doubles the speed; the first compile takes about a minute, later runs read "
                        "inductor's cache)")
    p.add_argument("--tools", help="a JSON file of OpenAI tool definitions the model may call; you type each "
                                   "call's result (the format: baichuan/toolcalls.py)")
    p.add_argument("--tool-choice", default="auto", help="with --tools: auto (text or calls), required (calls), "
                                                         "none, or a function's name (default auto)")
    _add_sampling(p)


def _load_tools(path: str) -> list[dict]:
    from baichuan.toolcalls import ToolError, check_tools
    try:
        return check_tools(json.loads(Path(path).read_text(encoding="utf-8")))
    except OSError as e:
        raise BaichuanError(f"--tools {path}: {e.strerror or e}") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise BaichuanError(f"--tools {path}: not JSON ({e})") from None
    except ToolError as e:
        raise BaichuanError(f"--tools {path}: {e}") from None


def _tool_turns(calls: list[tuple[str, str]], interactive: bool) -> list[dict] | None:
    """The assistant's calls and the results the user types for them, as OpenAI messages; None
    when input ends."""
    ids = [f"call_{i}" for i in range(len(calls))]
    turns = [{"role": "assistant", "content": None, "tool_calls": [
        {"id": i, "type": "function", "function": {"name": name, "arguments": arguments}}
        for i, (name, arguments) in zip(ids, calls)]}]
    for i, (name, arguments) in zip(ids, calls):
        try:
            result = input(f"tool {name}({arguments})> " if interactive else "")
        except EOFError:
            return None
        turns.append({"role": "tool", "tool_call_id": i, "content": result})
    return turns


def run_chat(args) -> None:
    from baichuan.generate import stream_text
    from baichuan.runtime import load_model_and_tokenizer, ready_engine
    from baichuan.tokenizer import chat_template_for, fit_chat
    from baichuan.toolcalls import parse_calls, plain_messages
    model, tok = load_model_and_tokenizer(args.model, args.device, args.dtype)
    # the default (Baichuan 2's 2048) must leave room for the conversation in a short context
    params = _sampling(args, tok, room=model.cfg.max_len // 2)
    if args.max_new_tokens is not None and args.max_new_tokens > model.cfg.max_len - 2:
        raise BaichuanError(f"--max-new-tokens {args.max_new_tokens} leaves no room for a message in the "
                            f"{model.cfg.max_len}-token context")
    template = args.template or chat_template_for(tok)
    if args.system and template == "baichuan":
        raise BaichuanError("--system needs the baichuan2 chat template: Baichuan-13B-Chat's format has no "
                            "system prompt")
    messages = [{"role": "system", "content": args.system}] if args.system else []
    functions = _load_tools(args.tools) if args.tools else None
    if functions:  # a reply is text or calls, each call's arguments as its schema says (structured.py)
        from baichuan.infer.structured import Grammars, tool_grammar
        if args.tool_choice not in ("auto", "none", "required", *(f["name"] for f in functions)):
            raise BaichuanError(f"--tool-choice {args.tool_choice}: not auto, none, required or a function of "
                                f"--tools {args.tools}")
        grammar = Grammars(tok, model.cfg.vocab_size, tok.stop_ids).compile(tool_grammar(functions, args.tool_choice))
        params = dataclasses.replace(params, grammar=grammar)
    interactive = sys.stdin.isatty()
    engine = ready_engine(model, args.compile, [params], lambda text: print(text, flush=True) if interactive else None,
                          max_batch=1)
    if interactive:
        print(f"{_banner(model, engine)} | template {template} | /reset clears, /exit or Ctrl-D quits")
    while True:
        try:
            line = input("user> " if interactive else "")
        except EOFError:
            break
        if line.strip() in ("/exit", "/quit"):
            break
        if line.strip() == "/reset":
            messages = messages[:1] if args.system else []
            continue
        if not line.strip():
            continue
        sent = len(messages)
        messages.append({"role": "user", "content": line})
        while messages[-1]["role"] != "assistant":  # a reply, or calls whose results come back for one
            try:  # without --max-new-tokens a long message takes room from the reply; with it, it is refused
                ids, max_new = fit_chat(tok, plain_messages(messages, functions), template, params.max_new_tokens,
                                        model.cfg.max_len, shrink=args.max_new_tokens is None,
                                        length_name="--max-new-tokens")
            except BaichuanError as e:
                print(f"error: {e}; the message was not sent", file=sys.stderr)
                del messages[sent:]
                break
            print("assistant> " if interactive else "", end="", flush=True)
            reply = []
            for piece in stream_text(model, tok, ids, dataclasses.replace(params, max_new_tokens=max_new), engine):
                reply.append(piece)
                print(piece, end="", flush=True)
            print()
            calls = parse_calls("".join(reply)) if functions else None
            turns = _tool_turns(calls, interactive) if calls else [{"role": "assistant", "content": "".join(reply)}]
            if turns is None:
                return
            messages += turns


# --------------------------------------------------------------------------------------- serve

def add_serve_arguments(p) -> None:
    p.add_argument("model", help="model directory")
    g = p.add_argument_group("network")
    g.add_argument("--host", default="127.0.0.1", help="default 127.0.0.1 (this machine only)")
    g.add_argument("--port", type=bounded(int, 1, 65535), default=8000, help="default 8000")
    g.add_argument("--api-key", help="require 'Authorization: Bearer KEY' (or set BAICHUAN_API_KEY)")
    g.add_argument("--name", help="model id in the API (default: the directory name)")
    g = p.add_argument_group("limits")
    g.add_argument("--max-batch", type=bounded(int, 1), default=8, help="requests decoded together (KV cache rows)")
    g.add_argument("--max-queue", type=bounded(int, 0), default=64, help="requests waiting beyond that; more get 503")
    g.add_argument("--max-len", type=bounded(int, 2), help="context per request (default: the model's)")
    g.add_argument("--prefix-cache-mb", type=bounded(int, 0), default=512,
                   help="memory for keys and values of prompt prefixes reused across requests (0: off; "
                        "default 512)")
    p.add_argument("--compile", action=argparse.BooleanOptionalAction,
                   help="compile the decode step for every batch size before serving starts (CUDA graphs on GPUs); "
                        "default: on a CPU for bf16/int8/int4 models under 512 MB, one-row steps only (greedy and "
                        "the model's sampling defaults; batches decode eager); --no-compile: eager")
    p.add_argument("--index", help="a document index (`baichuan index DIR`): enables POST /v1/ask and "
                                   "document search in the web chat")
    add_device_arguments(p)


def run_serve(args) -> None:
    from baichuan.infer.server import serve
    serve(args.model, host=args.host, port=args.port, api_key=args.api_key or os.environ.get("BAICHUAN_API_KEY"),
          max_batch=args.max_batch, max_queue=args.max_queue, max_len=args.max_len, device=args.device,
          dtype=args.dtype, model_name=args.name, index_dir=args.index, compile=args.compile,
          prefix_cache_mb=args.prefix_cache_mb)


# ---------------------------------------------------------------------------------------- info

def add_info_arguments(p) -> None:
    p.add_argument("model", help="model directory")


def run_info(args) -> None:
    from baichuan.checkpoint import weight_files
    from baichuan.config import load_config, load_generation_config
    from baichuan.quant import read_quantization_config
    if not Path(args.model).is_dir():
        raise BaichuanError(f"{args.model}: not a model directory")
    cfg = load_config(args.model)
    files = weight_files(Path(args.model))
    print(cfg.describe())
    print(f"weights: {len(files)} file(s), {sum(f.stat().st_size for f in files) / 1e9:.2f} GB")
    qc = read_quantization_config(args.model)
    if qc:
        group = f", groups of {qc['group_size']}, {'symmetric' if qc['symmetric'] else 'asymmetric'}" \
            if qc["bits"] == 4 else ""
        print(f"quantized: int{qc['bits']} weight-only{group}; modules {', '.join(qc.get('modules') or [])}")
    print(f"generation defaults: {load_generation_config(args.model).to_dict()}")
