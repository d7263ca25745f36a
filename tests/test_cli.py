"""The `baichuan` command: every stage answers, bad input gets one clear line and a non-zero exit."""

import subprocess
import sys

import pytest

from baichuan.cli import main


def run(args, capsys, stdin=None, monkeypatch=None):
    if stdin is not None:
        import io
        monkeypatch.setattr(sys, "stdin", io.StringIO(stdin))
    code = main(args)
    out, err = capsys.readouterr()
    return code, out, err


def test_every_stage_has_help(capsys):
    for stage in ("speedrun", "data", "tokenizer", "train", "sft", "dpo", "adapt", "eval", "quantize", "serve",
                  "chat", "generate", "index", "ask", "info"):
        with pytest.raises(SystemExit) as e:
            main([stage, "--help"])
        assert e.value.code == 0, stage
        assert "usage: baichuan " + stage in capsys.readouterr().out


def test_unknown_preset_is_one_line_without_traceback(tmp_path):
    p = subprocess.run([sys.executable, "-m", "baichuan.cli", "speedrun", "--preset", "nope", "--out", str(tmp_path)],
                       capture_output=True, text=True)
    assert p.returncode == 1
    assert p.stderr.strip().splitlines() == [p.stderr.strip()]
    assert "unknown speedrun profile 'nope'" in p.stderr and "Traceback" not in p.stderr


def test_debug_flag_shows_the_traceback(tmp_path):
    p = subprocess.run([sys.executable, "-m", "baichuan.cli", "--debug", "info", str(tmp_path)],
                       capture_output=True, text=True)
    assert p.returncode != 0 and "Traceback" in p.stderr


def test_not_a_model_directory(tmp_path, capsys):
    code, _, err = run(["generate", str(tmp_path), "hello"], capsys)
    assert code == 1 and str(tmp_path) in err and "not a model directory" in err
    code, _, err = run(["generate", str(tmp_path / "missing"), "hello"], capsys)
    assert code == 1 and "no such model directory" in err


def test_tokenizer_train_rejects_non_utf8_and_empty_text(tmp_path, capsys):
    bad = tmp_path / "bad.txt"
    bad.write_bytes("第一行\n".encode() + b"second line \xff\xfe broken\n")
    code, _, err = run(["tokenizer", "train", str(bad), "--out", str(tmp_path / "t"), "--vocab-size", "1000"], capsys)
    assert code == 1 and "bad.txt" in err and "line 2" in err
    empty = tmp_path / "empty.txt"
    empty.write_text("\n\n")
    code, _, err = run(["tokenizer", "train", str(empty), "--out", str(tmp_path / "t")], capsys)
    assert code == 1 and "empty.txt" in err
    assert not (tmp_path / "t" / "tokenizer.model").exists()


def test_generate_and_info_on_a_model_directory(tiny_model_dir, capsys):
    code, out, _ = run(["generate", str(tiny_model_dir), "床前明月光，", "--max-new-tokens", "8", "--seed", "1"], capsys)
    assert code == 0 and out.strip()
    code2, out2, _ = run(["generate", str(tiny_model_dir), "床前明月光，", "--max-new-tokens", "8", "--seed", "1"], capsys)
    assert out2 == out
    code, out, _ = run(["info", str(tiny_model_dir)], capsys)
    assert code == 0 and "rope" in out and "generation defaults" in out


def test_chat_answers_each_turn_compiled_by_default_on_a_cpu(tiny_model_dir, capsys, monkeypatch):
    """A small model on a CPU chats through one compiled engine for the whole session (the
    runtime's choice), and its greedy replies are the eager engine's."""
    from baichuan.runtime import compile_decode, load_model_and_tokenizer
    assert compile_decode(load_model_and_tokenizer(tiny_model_dir, "cpu")[0])
    replies = []
    for flags in ([], ["--no-compile"]):
        code, out, err = run(["chat", str(tiny_model_dir), "--max-new-tokens", "6", "--greedy", *flags], capsys,
                             stdin="你好\nhow are you?\n/exit\n", monkeypatch=monkeypatch)
        assert code == 0, err
        assert len(out.splitlines()) == 2
        replies.append(out)
    assert replies[0] == replies[1]


def test_generate_compiles_by_default_only_when_the_reply_wins_the_compile_back(tiny_model_dir, capsys,
                                                                                 monkeypatch):
    from baichuan.runtime import COMPILE_FROM_TOKENS, compile_decode, load_model_and_tokenizer
    model = load_model_and_tokenizer(tiny_model_dir, "cpu")[0]
    assert not compile_decode(model, None, COMPILE_FROM_TOKENS - 1) and compile_decode(model, None, COMPILE_FROM_TOKENS)
    assert compile_decode(model, True, 10) and not compile_decode(model, False, 10 ** 6)
    outs = []
    for flags in ([], ["--compile"]):
        code, out, err = run(["generate", str(tiny_model_dir), "hello", "--max-new-tokens", "5", "--greedy", *flags],
                             capsys, monkeypatch=monkeypatch)
        assert code == 0 and ("compiled (inductor)" in err) == bool(flags), err
        outs.append(out)
    assert outs[0] == outs[1]


def test_chat_decodes_eager_when_compiling_fails(tiny_model_dir, capsys, monkeypatch):
    """A machine where inductor cannot compile (no C++ compiler): the default chat says so and
    answers eager; an explicit --compile is a one-line error."""
    from baichuan.infer.engine import Engine

    def fail(self, *args, **kwargs):
        if self.compiled:
            raise RuntimeError("no C++ compiler")
    monkeypatch.setattr(Engine, "warm_up", fail)
    code, out, err = run(["chat", str(tiny_model_dir), "--max-new-tokens", "4", "--greedy"], capsys,
                         stdin="你好\n/exit\n", monkeypatch=monkeypatch)
    assert code == 0 and "decoding eager" in err and out.count("\n") == 1, err
    code, _, err = run(["chat", str(tiny_model_dir), "--compile"], capsys, stdin="", monkeypatch=monkeypatch)
    assert code == 1 and "compiling the decode step failed (RuntimeError: no C++ compiler)" in err


def test_chat_never_cuts_the_newest_message(tiny_model_dir, capsys, monkeypatch):
    """The released builders cut a prompt from the left, which could drop the question itself. A
    message that does not fit before --max-new-tokens is refused and the session goes on; without
    --max-new-tokens a long message takes room from the reply instead."""
    code, out, err = run(["chat", str(tiny_model_dir), "--max-new-tokens", "240", "--greedy", "--no-compile"], capsys,
                         stdin="很长的问题" * 10 + "\n你好\n/exit\n", monkeypatch=monkeypatch)
    assert code == 0 and "the message was not sent" in err and "240" in err
    assert out.count("\n") == 1                                      # the short one was answered
    code, out, err = run(["chat", str(tiny_model_dir), "--greedy", "--no-compile"], capsys,
                         stdin="很长的问题" * 35 + "\n/exit\n", monkeypatch=monkeypatch)
    assert code == 0 and out.count("\n") == 1 and not err, err         # ~180 of 256 tokens: answered
    code, _, err = run(["chat", str(tiny_model_dir), "--system", "be brief", "--template", "baichuan"], capsys,
                       stdin="", monkeypatch=monkeypatch)
    assert code == 1 and "--system needs the baichuan2 chat template" in err
    code, _, err = run(["chat", str(tiny_model_dir), "--max-new-tokens", "255"], capsys, stdin="",
                       monkeypatch=monkeypatch)
    assert code == 1 and "leaves no room for a message in the 256-token context" in err


def test_chat_calls_tools_and_reads_the_typed_results(tmp_path, small_tokenizer, capsys, monkeypatch):
    """`chat --tools`: the reply is a call in toolcalls.py's format (arguments as the schema says);
    the line typed next is its result, after which the model answers again."""
    import json

    import torch

    from baichuan.checkpoint import save_pretrained
    from baichuan.config import preset
    from baichuan.model import build
    torch.manual_seed(0)
    model_dir = save_pretrained(build(preset("tiny", vocab_size=small_tokenizer.vocab_size, max_len=2048)),
                                tmp_path / "m", tokenizer=small_tokenizer)
    tools = tmp_path / "tools.json"
    tools.write_text(json.dumps([{"type": "function", "function": {"name": "get_weather", "parameters": {
        "type": "object", "properties": {"city": {"enum": ["北京", "上海"]}}, "required": ["city"]}}}]))
    code, out, err = run(["chat", str(model_dir), "--tools", str(tools), "--tool-choice", "get_weather",
                          "--no-compile", "--max-new-tokens", "200"], capsys, stdin="北京天气？\n晴\n",
                         monkeypatch=monkeypatch)
    assert code == 0, err
    replies = out.splitlines()
    assert len(replies) == 2  # the call; then, after the typed result, the next reply (a call again: it is forced)
    for reply in replies:
        assert json.loads(reply.removeprefix("<tool_call>").removesuffix("</tool_call>"))["arguments"]["city"] in \
            ("北京", "上海")
    tools.write_text("[]")
    code, _, err = run(["chat", str(model_dir), "--tools", str(tools)], capsys, stdin="", monkeypatch=monkeypatch)
    assert code == 1 and "--tools" in err and "list of 1" in err


def test_training_commands_show_their_own_flags_only(capsys):
    """`baichuan sft` has no --task (it is one) and no --preset (it starts from --init-from);
    --dpo-beta belongs to dpo; the fine-tuning flags are not pretraining's."""
    flags = {}
    for command in ("train", "sft", "dpo"):
        with pytest.raises(SystemExit):
            main([command, "--help"])
        flags[command] = capsys.readouterr().out
    assert "--preset" in flags["train"] and "--preset" not in flags["sft"] + flags["dpo"]
    assert "--task" not in flags["sft"] + flags["dpo"] + flags["train"]  # each command is one task
    assert "--dpo-beta" in flags["dpo"] and "--dpo-beta" not in flags["sft"] + flags["train"]
    assert "--on-long" in flags["sft"] and "--on-long" not in flags["train"]
    with pytest.raises(SystemExit) as e:
        main(["sft", "--task", "dpo", "--data", "x.jsonl"])
    assert e.value.code == 2 and "unrecognized arguments: --task" in capsys.readouterr().err


def test_every_flag_of_every_command_has_help():
    import argparse
    from baichuan.cli import build_parser

    def walk(parser, path):
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                for name, sub in action.choices.items():
                    yield from walk(sub, path + [name])
            elif action.option_strings and action.help != argparse.SUPPRESS:
                yield path, action
    missing = [f"baichuan {' '.join(path)} {a.option_strings[-1]}" for path, a in walk(build_parser(), [])
               if not a.help]
    assert not missing, missing


def test_the_command_line_answers_without_importing_torch():
    """`baichuan --help` and every `baichuan CMD --help` must not wait for torch (it took 5-7 s)."""
    code = ("import sys; from baichuan.cli import build_parser; build_parser(); "
            "assert 'torch' not in sys.modules, sorted(m for m in sys.modules if m.startswith('torch'))[:3]")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr


def test_help_answers_about_as_fast_as_python_starts():
    """`baichuan --help` and `baichuan train --help` against `python -c pass`, each the fastest of 3
    runs (so a busy machine slows both alike). Importing torch alone is more than 50 starts."""
    import time

    def fastest(*args):
        times = []
        for _ in range(3):
            t = time.perf_counter()
            subprocess.run([sys.executable, *args], capture_output=True, check=True)
            times.append(time.perf_counter() - t)
        return min(times)

    start = fastest("-c", "pass")
    for command in (["--help"], ["train", "--help"]):
        ratio = fastest("-m", "baichuan.cli", *command) / start
        assert ratio < 25, f"baichuan {' '.join(command)} takes {ratio:.0f}x as long as python -c pass"


def test_the_command_line_and_the_server_read_sampling_settings_alike(tiny_model_dir):
    """One rule turns asked settings into sampling parameters (temperature 0 greedy, a positive
    one samples even when the model's default is greedy, unset ones from generation_config.json)."""
    import argparse

    from baichuan.config import load_generation_config
    from baichuan.infer import command
    from baichuan.infer.openai_request import sampling_from
    from baichuan.tokenizer import Tokenizer
    tok = Tokenizer.load(tiny_model_dir)
    gen = load_generation_config(tiny_model_dir)
    parser = argparse.ArgumentParser()
    command.add_generate_arguments(parser)
    cases = [({}, []), ({"temperature": 0}, ["--temperature", "0"]), ({"temperature": 0.7}, ["--temperature", "0.7"]),
             ({"temperature": 1.2, "top_k": 5, "top_p": 0.5, "seed": 3, "max_tokens": 7},
              ["--temperature", "1.2", "--top-k", "5", "--top-p", "0.5", "--seed", "3", "--max-new-tokens", "7"]),
             ({"repetition_penalty": 1.3, "stop": ["。"]}, ["--repetition-penalty", "1.3", "--stop", "。"])]
    for body, flags in cases:
        args = parser.parse_args([str(tiny_model_dir), "x", *flags])
        ours = command._sampling(args, tok)
        served = sampling_from(body, gen, gen.max_new_tokens, tok.stop_ids, 1 << 20)
        assert ours == served, (body, ours, served)
    sampled = command._sampling(parser.parse_args([str(tiny_model_dir), "x", "--temperature", "0.7"]), tok)
    assert sampled.do_sample and sampled.temperature == 0.7
    assert not command._sampling(parser.parse_args([str(tiny_model_dir), "x", "--greedy"]), tok).do_sample


def test_temperature_zero_is_greedy(tiny_model_dir, capsys):
    args = ["generate", str(tiny_model_dir), "床前明月光，", "--max-new-tokens", "8"]
    code, zero, err = run(args + ["--temperature", "0"], capsys)
    assert code == 0, err
    assert zero == run(args + ["--greedy"], capsys)[1]


def test_chat_default_length_fits_a_short_context(tiny_model_dir, tmp_path, capsys, monkeypatch):
    """Directories written here default to half the context; a released generation_config.json
    (2048 new tokens) on a short-context model still chats, with the reply capped at half."""
    import json
    import shutil
    from baichuan.config import load_config
    max_len = load_config(tiny_model_dir).max_len
    gen = json.loads((tiny_model_dir / "generation_config.json").read_text())
    assert gen["max_new_tokens"] == min(2048, max_len // 2) < 2048
    model = shutil.copytree(tiny_model_dir, tmp_path / "m")
    (model / "generation_config.json").write_text(json.dumps({**gen, "max_new_tokens": 2048}))
    code, out, err = run(["chat", str(model), "--greedy", "--no-compile"], capsys, stdin="你好\n/exit\n", monkeypatch=monkeypatch)
    assert code == 0, err
    assert out.count("\n") == 1  # one reply (random text may hold other line-breaking characters)


@pytest.mark.parametrize("mode", ["int8", "int4"])
def test_quantize_then_generate_and_eval(tiny_model_dir, tmp_path, capsys, mode):
    out = tmp_path / f"q-{mode}"
    code, printed, err = run(["quantize", str(tiny_model_dir), "--mode", mode, "--out", str(out)], capsys)
    assert code == 0 and str(out) in printed, err
    code, text, err = run(["generate", str(out), "床前明月光，", "--max-new-tokens", "6", "--greedy"], capsys)
    assert code == 0 and text.strip(), err
    code, text, err = run(["info", str(out)], capsys)
    assert code == 0 and f"quantized: {mode} weight-only" in text, err
    doc = tmp_path / "doc.txt"
    doc.write_text("子曰：学而时习之，不亦说乎？有朋自远方来，不亦乐乎？", encoding="utf-8")
    code, table, err = run(["eval", str(out), "--tasks", "bpb", "--text", str(doc), "--out", str(tmp_path / "ev")],
                           capsys)
    assert code == 0, err
    assert "bits" in table.lower() or "bpb" in table.lower()


def test_nonsensical_options_and_files_get_one_line(tiny_model_dir, tmp_path, capsys):
    """Found by a newcomer QA pass: each of these used to run wrongly, hang or print a traceback."""
    import json
    import shutil
    import torch
    m = str(tiny_model_dir)
    cases = [
        (["quantize", m, "--mode", "int8", "--out", m], "would replace the model being quantized"),
        (["quantize", m, "--mode", "int8", "--group-size", "32"], "--group-size is for int4"),
        (["generate", m, "hi", "--device", "foo"], "not a device name"),
        (["tokenizer", "report", "--tokenizer", f"ours={m}", "--baichuan-assets", str(tmp_path / "none")],
         "--baichuan-assets"),
    ]
    if not torch.cuda.is_available():
        cases.append((["generate", m, "hi", "--device", "cuda"], "no CUDA device"))
    bad_gen = shutil.copytree(tiny_model_dir, tmp_path / "m")
    gen = json.loads((bad_gen / "generation_config.json").read_text())
    (bad_gen / "generation_config.json").write_text(json.dumps({**gen, "max_new_tokens": "lots"}))
    cases.append((["generate", str(bad_gen), "hi"], "field 'max_new_tokens' must be int"))
    for args, message in cases:
        code, _, err = run(args, capsys)
        assert code == 1 and message in err and "Traceback" not in err, (args, err)
    assert (tiny_model_dir / "config.json").exists()                      # the refused quantize left it whole
    for args in (["serve", m, "--port", "99999"], ["serve", m, "--max-batch", "0"], ["eval", m, "--limit", "0"],
                 ["ask", "q", "--index", m, "--top-k", "0"], ["ask", "q", "--index", m, "--min-coverage", "5"]):
        with pytest.raises(SystemExit) as e:   # argparse: usage and one line naming the option
            main(args)
        assert e.value.code == 2 and "must be" in capsys.readouterr().err, args


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's malloc_trim: Linux only")
def test_release_freed_heap_gives_freed_memory_back_to_the_os():
    """Memory freed in the middle of glibc's heap stays in the process until it is trimmed: what
    loading a model (reads, int4 repacking) leaves behind."""
    from pathlib import Path

    from baichuan.runtime import release_freed_heap

    def anon_mb():
        return int(Path("/proc/self/status").read_text().split("RssAnon:")[1].split()[0]) / 1024
    chunks = [bytearray(64 << 10) for _ in range(3200)]   # 200 MB in pieces below mmap's threshold
    keep = chunks[-1::-100]                               # a few live pieces hold the heap's top up
    del chunks
    before = anon_mb()
    release_freed_heap()
    assert before - anon_mb() > 100 and len(keep) == 32
