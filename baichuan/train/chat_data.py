"""Chat data for supervised fine-tuning: read, render with the chat template, label, pack.

Accepted JSONL lines (one conversation each):
    {"messages": [{"role": "system"|"user"|"assistant", "content": "..."}, ...]}       OpenAI style
    {"tools": [...], "messages": [..., {"role": "assistant", "tool_calls": [...]},
                                  {"role": "tool", "tool_call_id": ..., "content": ...}, ...]}   with tool use
    {"conversations": [{"from": "human"|"gpt"|..., "value": "..."}, ...]}            Baichuan 2 fine-tune.py

Tool use is written in toolcalls.py's format, as the server and `baichuan chat` write it: the
tools in the system text, each call an assistant turn of `<tool_call>` blocks (learned), each
result a user turn of `<tool_response>` blocks (not learned).

Rendering is the chat prompt's (tokenizer.py): an optional system text with no role token, then
195 + user text and 196 + assistant text per turn, no EOS between turns, EOS at the end. Labels
follow Baichuan 2's fine-tune.py: assistant text is learned; role tokens, user and system text are
not; and EOS is the label at each user role token that follows an assistant reply, so the model
learns to stop exactly where the next user turn would begin (while EOS never appears inside the
history). Labels are aligned with the inputs, HF style: the model at position t predicts labels[t+1].

Packing puts several conversations in one row of seq_len+1 tokens with segment ids, so attention
stays within a conversation (block-diagonal) and positions restart for each.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from baichuan.config import ASSISTANT_TOKEN_ID, USER_TOKEN_ID
from baichuan.errors import BaichuanError
from baichuan.toolcalls import ToolError, check_tools, plain_messages

IGNORE = -100
ROLES = {"system": "system", "user": "user", "human": "user", "assistant": "assistant", "gpt": "assistant",
         "bot": "assistant"}


@dataclass
class ChatReport:
    """What happened to every line: kept, or dropped/refused with a reason (first examples listed)."""
    lines: int = 0
    kept: int = 0
    truncated: int = 0
    dropped: Counter = field(default_factory=Counter)
    examples: list[str] = field(default_factory=list)

    def problem(self, where: str, reason: str) -> None:
        self.dropped[reason] += 1
        if len(self.examples) < 20:
            self.examples.append(f"{where}: {reason}")

    def summary(self) -> str:
        drops = ", ".join(f"{r} {n}" for r, n in self.dropped.most_common()) or "none"
        return (f"{self.lines} lines: {self.kept} kept ({self.truncated} truncated), "
                f"{sum(self.dropped.values())} dropped ({drops})")

    def dropped_lines(self, indent: str = "\n          ") -> str:
        """The first dropped lines (file:line: reason), each on its own indented line."""
        n = sum(self.dropped.values())
        return "".join(f"{indent}dropped {e}" for e in self.examples[:5]) + (f"{indent}... and {n - 5} more" if n > 5 else "")


def parse_conversation(record) -> list[dict]:
    """A JSONL record -> [{"role", "content"}]; raises ValueError(reason) when it is not a chat."""
    if not isinstance(record, dict):
        raise ValueError("not_an_object")
    for key, role_key, content_key in (("messages", "role", "content"), ("conversations", "from", "value")):
        if key in record:
            break
    else:
        raise ValueError("no_messages")
    raw = record[key] or []
    if not isinstance(raw, list):
        raise ValueError(f"{key}_not_a_list")
    if key == "messages" and ("tools" in record or any(
            isinstance(m, dict) and (m.get("role") == "tool" or m.get("tool_calls")) for m in raw)):
        try:  # tool calls and results become the text the model reads and writes (toolcalls.py)
            raw = plain_messages(raw, check_tools(record["tools"]) if record.get("tools") else None)
        except ToolError as e:
            raise ValueError(f"bad_tool_use ({e})") from None
    turns = [(m.get(role_key), m.get(content_key)) if isinstance(m, dict) else (None, None) for m in raw]
    out = []
    for role, content in turns:
        if not isinstance(role, str) or role not in ROLES:
            raise ValueError(f"unknown_role:{role}")
        if not isinstance(content, str):
            raise ValueError("content_not_a_string")
        out.append({"role": ROLES[role], "content": content})
    if any(m["role"] == "system" for m in out[1:]):
        raise ValueError("system_not_first")
    if not any(m["role"] == "assistant" for m in out):
        raise ValueError("no_assistant_turn")
    if any(m["role"] == "assistant" and not m["content"].strip() for m in out):
        raise ValueError("empty_assistant_turn")
    return out


def render(tok, messages: list[dict], eos_id: int) -> tuple[list[int], list[int]]:
    """(input_ids, labels) of one conversation, Baichuan 2's SFT scheme (module docstring); in the
    tokenizer's own chat template where it has one (LLaMA-2-Chat, Yi-Chat: templates.py)."""
    if getattr(tok, "chat_template", None) is not None:
        from baichuan.templates import training_ids
        return training_ids(tok, messages, IGNORE)
    ids, labels = [], []
    prev = None
    for m in messages:
        text = tok.encode(m["content"]) if m["content"] else []
        if m["role"] == "system":
            ids += text
            labels += [IGNORE] * len(text)
        elif m["role"] == "user":
            ids += [USER_TOKEN_ID] + text
            labels += [eos_id if prev == "assistant" else IGNORE] + [IGNORE] * len(text)
        else:
            ids += [ASSISTANT_TOKEN_ID] + text
            labels += [IGNORE] + text
        prev = m["role"]
    if prev == "assistant":
        ids.append(eos_id)
        labels.append(eos_id)
    return ids, labels


def _load_lines(path: str | Path, what: str, on_error: str, parse) -> tuple[list, ChatReport]:
    """`parse(record, report)` over the JSON lines of `path`: its results, and a report of the lines
    it rejected (it raises ValueError("reason")) or that are not JSON. on_error="refuse" raises at
    the first bad line instead."""
    path = Path(path)
    if not path.is_file():
        raise BaichuanError(f"{path}: no such {what} file")
    report, out = ChatReport(), []
    with open(path, "rb") as f:
        for lineno, raw in enumerate(f, 1):
            if not raw.strip():
                continue
            report.lines += 1
            try:
                # a byte-order mark (Windows editors) is not part of the first record
                item = parse(json.loads(raw.decode("utf-8-sig" if lineno == 1 else "utf-8")), report)
            except UnicodeDecodeError:
                reason = "not_utf8"
            except json.JSONDecodeError:
                reason = "bad_json"
            except ValueError as e:
                reason = str(e)
            else:
                out.append(item)
                report.kept += 1
                continue
            if on_error == "refuse":
                raise BaichuanError(f"{path}:{lineno}: {reason}")
            report.problem(f"{path}:{lineno}", reason.split(" (")[0])
    return out, report


def _fit(ids: list[int], labels: list[int], limit: int, on_long: str) -> tuple[list[int], list[int], bool]:
    """A rendered example within `limit` tokens: (ids, labels, whether it was cut). Raises
    ValueError(reason) when it is too long (on_long "skip") or has no label left to learn."""
    cut = len(ids) > limit and on_long == "truncate"
    if cut:
        ids, labels = ids[:limit], labels[:limit]
    if len(ids) > limit:
        raise ValueError(f"longer_than_context ({len(ids)} > {limit} tokens)")
    if all(lab == IGNORE for lab in labels[1:]):
        raise ValueError("nothing_to_learn" + (" (after truncation)" if cut else ""))
    return ids, labels, cut


def load_chats(path: str | Path, tok, max_tokens: int, on_long: str = "skip", on_error: str = "skip",
               eos_id: int = 2) -> tuple[list[tuple[list[int], list[int]]], ChatReport]:
    """Rendered conversations of a JSONL file and what was dropped. on_error="refuse" raises at the
    first bad line; on_long="truncate" cuts long conversations to max_tokens instead of dropping."""
    def parse(record, report):
        ids, labels, cut = _fit(*render(tok, parse_conversation(record), eos_id), max_tokens, on_long)
        report.truncated += cut  # counted among the kept: a cut that left nothing to learn was dropped
        return ids, labels

    out, report = _load_lines(path, "chat data", on_error, parse)
    if not out:
        raise BaichuanError(f"{path}: no usable conversation ({report.summary()})")
    return out, report


def pack(examples: list[tuple[list[int], list[int]]], seq_len: int, pad_id: int = 0) -> dict[str, np.ndarray]:
    """Rows of seq_len+1 tokens, first-fit in order of decreasing length. Returns int32 arrays
    [N, seq_len+1]: tokens, labels (IGNORE on padding), segments (one id per conversation; padding
    gets its own) and positions (restarting at 0 for each conversation)."""
    width = seq_len + 1
    rows: list[list[int]] = []   # example indices per row
    room: list[int] = []
    for i in sorted(range(len(examples)), key=lambda i: -len(examples[i][0])):
        n = len(examples[i][0])
        if n > width:
            raise BaichuanError(f"a conversation of {n} tokens does not fit in seq_len+1 = {width}")
        for r, free in enumerate(room):
            if free >= n:
                rows[r].append(i)
                room[r] -= n
                break
        else:
            rows.append([i])
            room.append(width - n)
    arrays = {k: np.full((len(rows), width), fill, dtype=np.int32)
              for k, fill in (("tokens", pad_id), ("labels", IGNORE), ("segments", 0), ("positions", 0))}
    for r, members in enumerate(rows):
        at = 0
        for seg, i in enumerate(members):
            ids, labels = examples[i]
            n = len(ids)
            arrays["tokens"][r, at:at + n] = ids
            arrays["labels"][r, at:at + n] = labels
            arrays["labels"][r, at] = IGNORE  # never learn across a conversation boundary
            arrays["segments"][r, at:at + n] = seg
            arrays["positions"][r, at:at + n] = np.arange(n)
            at += n
        arrays["segments"][r, at:] = len(members)
        arrays["positions"][r, at:] = np.arange(width - at)
    return arrays


def load_pairs(path: str | Path, tok, seq_len: int, on_long: str = "skip", on_error: str = "skip",
               eos_id: int = 2) -> tuple[dict[str, np.ndarray], ChatReport]:
    """Preference pairs for DPO, one JSONL line each: {"prompt": str or messages, "chosen": str,
    "rejected": str}. Returns tokens and labels [N, 2, seq_len+1] (row 0 chosen, row 1 rejected;
    labels only on the answer and its EOS) and the report."""
    width = seq_len + 1

    def parse(rec, report):
        if not isinstance(rec, dict):
            raise ValueError("not_an_object")
        prompt, chosen, rejected = rec.get("prompt"), rec.get("chosen"), rec.get("rejected")
        if chosen is None or rejected is None:
            raise ValueError("chosen_or_rejected_missing")
        if not all(isinstance(x, str) for x in (chosen, rejected)):
            raise ValueError("chosen_or_rejected_not_text")
        if not chosen.strip() or not rejected.strip():
            raise ValueError("empty_answer")
        if chosen.strip() == rejected.strip():
            raise ValueError("identical_answers")
        if isinstance(prompt, str):
            prompt = [{"role": "user", "content": prompt}]
        try:
            messages = parse_conversation({"messages": prompt + [{"role": "assistant", "content": "x"}]})[:-1]
        except TypeError:
            raise ValueError("bad_prompt") from None
        pair = [_fit(*render(tok, messages + [{"role": "assistant", "content": answer}], eos_id), width, on_long)
                for answer in (chosen, rejected)]
        report.truncated += any(cut for _, _, cut in pair)
        return [(ids, labels) for ids, labels, _ in pair]

    rows, report = _load_lines(path, "preference data", on_error, parse)
    if not rows:
        raise BaichuanError(f"{path}: no usable preference pair ({report.summary()})")
    tokens = np.zeros((len(rows), 2, width), dtype=np.int32)
    labels = np.full((len(rows), 2, width), IGNORE, dtype=np.int32)
    for i, pair in enumerate(rows):
        for j, (ids, lab) in enumerate(pair):
            tokens[i, j, :len(ids)] = ids
            labels[i, j, :len(lab)] = lab
    return {"tokens": tokens, "labels": labels}, report
