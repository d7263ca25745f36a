"""Chat templates as data: a tokenizer directory's Jinja `chat_template` (LLaMA-2-Chat, Yi-Chat's
ChatML, ...) rendered and tokenized the way HF's `apply_chat_template(..., tokenize=True)` does,
so a prompt built here has the ids HF would give.

Rendering: a sandboxed Jinja environment with HF's settings (trim_blocks, lstrip_blocks) and names
(messages, add_generation_prompt, bos_token, eos_token, raise_exception, tojson, strftime_now).

Tokenizing the rendered text (HF, add_special_tokens=False): the added tokens ("<s>", "</s>",
"<unk>", SentencePiece's user-defined pieces, the config's added_tokens_decoder) are split out of
the text first, longest first, and become their ids; each stretch of text between them is encoded
by SentencePiece. With `legacy` (HF's default where the config does not say) every stretch gets
the dummy-prefix "▁"; without it only a stretch that opens the text does.

Unlike `Tokenizer.encode`, text such as "<s>" becomes a control id here: the template writes its
markers as text, and HF treats a user's text the same way.
"""

from __future__ import annotations

import datetime
import json
import re
from functools import cache

from baichuan.errors import BaichuanError
from baichuan.tokenizer import Tokenizer


def _token_text(value) -> str | None:
    """A special token from tokenizer_config.json: a string or an AddedToken dict."""
    return value.get("content") if isinstance(value, dict) else value


@cache
def _environment():
    try:
        from jinja2.sandbox import ImmutableSandboxedEnvironment
    except ImportError:
        raise BaichuanError("chat templates need jinja2: pip install jinja2") from None

    def raise_exception(message):
        raise BaichuanError(f"chat template: {message}")

    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True)
    env.filters["tojson"] = lambda x, indent=None, **_: json.dumps(x, ensure_ascii=False, indent=indent)
    env.globals["raise_exception"] = raise_exception
    env.globals["strftime_now"] = lambda fmt: datetime.datetime.now().strftime(fmt)
    return env


def render(tok: Tokenizer, messages: list[dict], add_generation_prompt: bool = True) -> str:
    template = tok.chat_template
    if template is None:
        raise BaichuanError(f"{tok.source}: the tokenizer has no chat_template")
    from jinja2 import TemplateError
    config = tok.hf_config
    try:
        return _environment().from_string(template).render(
            messages=messages, add_generation_prompt=add_generation_prompt,
            bos_token=_token_text(config.get("bos_token")) or tok.piece(tok.bos_id),
            eos_token=_token_text(config.get("eos_token")) or tok.piece(tok.eos_id))
    except TemplateError as e:
        raise BaichuanError(f"{tok.source}: chat_template: {e}") from None


@cache  # per tokenizer object
def _added_tokens(tok: Tokenizer) -> tuple[dict[str, tuple[int, bool, bool]], re.Pattern]:
    """(text -> (id, lstrip, rstrip), the pattern that finds them) of every token split out of the
    text before SentencePiece runs: unknown, control and user-defined pieces, and the config's
    added tokens."""
    proto = tok.proto()
    kinds = (proto.SentencePiece.UNKNOWN, proto.SentencePiece.CONTROL, proto.SentencePiece.USER_DEFINED)
    out = {p.piece: (i, False, False) for i, p in enumerate(proto.pieces) if p.type in kinds}
    for key, entry in (tok.hf_config.get("added_tokens_decoder") or {}).items():
        if isinstance(entry, dict) and isinstance(entry.get("content"), str):
            out[entry["content"]] = (int(key), bool(entry.get("lstrip")), bool(entry.get("rstrip")))
    return out, re.compile("|".join(re.escape(t) for t in sorted(out, key=len, reverse=True)))


def encode_chat_text(tok: Tokenizer, text: str) -> list[int]:
    """`text` as HF tokenizes it with add_special_tokens=False (see the module docstring)."""
    added, pattern = _added_tokens(tok)
    legacy = tok.hf_config.get("legacy", True) is not False
    ids: list[int] = []
    pos, strip_next = 0, False
    for m in pattern.finditer(text):
        token_id, lstrip, rstrip = added[m.group()]
        ids += _encode_stretch(tok, text[pos:m.start()], pos == 0 or legacy, strip_next, lstrip)
        ids.append(token_id)
        pos, strip_next = m.end(), rstrip
    return ids + _encode_stretch(tok, text[pos:], pos == 0 or legacy, strip_next, False)


def _encode_stretch(tok: Tokenizer, text: str, prefix: bool, lstrip: bool, rstrip: bool) -> list[int]:
    text = text.lstrip() if lstrip else text
    text = text.rstrip() if rstrip else text
    if not text:
        return []
    # HF's non-legacy stretches: no dummy prefix
    return tok.encode(text) if prefix else tok.without_dummy_prefix.encode(text)


def build_chat_input_jinja(tok: Tokenizer, messages: list[dict], **_budget) -> list[int]:
    """The directory's own chat format, as HF's apply_chat_template(add_generation_prompt=True,
    tokenize=True) gives it. Fitting to the context is `tokenizer.fit_chat`'s job."""
    return encode_chat_text(tok, render(tok, messages, add_generation_prompt=True))


def training_ids(tok: Tokenizer, messages: list[dict], ignore: int = -100) -> tuple[list[int], list[int]]:
    """(input_ids, labels) of a conversation in the template's format, for SFT: the tokens each
    assistant turn adds (its text and whatever the template closes it with, e.g. EOS or
    <|im_end|>) are learned, everything else is not. A turn's tokens are what the conversation up
    to it adds to the prompt the template builds for it (add_generation_prompt); a template whose
    renderings are not prefixes of each other cannot be labelled this way and is refused."""
    full = encode_chat_text(tok, render(tok, messages, add_generation_prompt=False))
    labels = [ignore] * len(full)
    for i, m in enumerate(messages):
        if m["role"] != "assistant":
            continue
        before = encode_chat_text(tok, render(tok, messages[:i], add_generation_prompt=True)) if i else []
        upto = encode_chat_text(tok, render(tok, messages[:i + 1], add_generation_prompt=False))
        if upto[:len(before)] != before or full[:len(upto)] != upto:
            raise ValueError("template_not_prefix_stable")
        labels[len(before):len(upto)] = upto[len(before):]
    return full, labels
