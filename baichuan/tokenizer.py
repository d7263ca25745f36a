"""Baichuan tokenizers: the released SentencePiece models, the released chat prompts, and training
a new tokenizer with Baichuan 2's recipe (spec §4, §5).

Three parts, one concern (text <-> ids):
  - `Tokenizer`: raw SentencePiece ids (never a BOS), HF-compatible decode, HF-style save.
  - `build_chat_input_v2` / `build_chat_input_v1`: the Baichuan2-Chat and Baichuan-13B-Chat prompt
    builders, id for id (they concatenate ids of separately encoded turns; they never add BOS/EOS).
  - `train_tokenizer`: SentencePiece BPE with Baichuan 2's options and an id layout that keeps the
    chat role tokens at 195/196 under the same names as Baichuan 2 (`reserved_layout`).
"""

from __future__ import annotations

import io
import json
import os
import re
from functools import cached_property
from pathlib import Path
from typing import Iterable, Iterator, Sequence

import sentencepiece as spm
from tqdm import tqdm

from baichuan import hf
from baichuan.config import ASSISTANT_TOKEN_ID, USER_TOKEN_ID
from baichuan.data.writers import atomic_write_bytes
from baichuan.errors import BaichuanError

MODEL_FILE = "tokenizer.model"
HF_CONFIG, HF_TEMPLATE = "tokenizer_config.json", "chat_template.jinja"
# a non-Baichuan tokenizer directory's own files, kept and written back as they are
HF_FILES = (HF_CONFIG, "special_tokens_map.json", "tokenizer.json", "added_tokens.json", HF_TEMPLATE)
MODEL_MAX_LENGTH = 4096            # tokenizer_config.json of Baichuan-13B-Chat and Baichuan2-Chat
USER_ID, ASSISTANT_ID = USER_TOKEN_ID, ASSISTANT_TOKEN_ID   # chat role ids, defined in config.py


def model_file(path: str | os.PathLike) -> Path:
    """The SentencePiece model of `path`: the file itself, or the tokenizer.model in a directory."""
    path = Path(path)
    return path / MODEL_FILE if path.is_dir() else path


class Tokenizer:
    """A SentencePiece model used the way Baichuan's own code uses it.

    `encode` is raw SentencePiece: no BOS/EOS, and text such as "<s>" is *not* turned into control
    ids (the HF slow wrapper would make "<s>" id 1). That keeps user-typed text from forging
    BOS/EOS. It does not protect the role tokens: "<reserved_106>" is a user-defined piece, so
    SentencePiece itself matches it in raw text, exactly as the released models do (spec §4).
    """

    def __init__(self, model_proto: bytes, *, source: str = "<memory>", model_max_length: int = MODEL_MAX_LENGTH,
                 hf_files: dict[str, bytes] | None = None):
        try:
            sp = spm.SentencePieceProcessor(model_proto=model_proto)
        except RuntimeError as e:
            raise BaichuanError(f"{source}: not a SentencePiece model ({_first_line(e)})") from None
        # An empty byte string parses as an empty ModelProto, so check there is a real vocabulary.
        if sp.get_piece_size() < 3 or sp.unk_id() < 0:
            raise BaichuanError(f"{source}: not a SentencePiece model (it has {sp.get_piece_size()} pieces)")
        self.sp = sp
        self.model_proto = bytes(model_proto)
        self.source = source
        self.model_max_length = model_max_length
        # HF's BaichuanTokenizer special tokens are exactly <unk>, <s>, </s> (pad is <unk>), i.e. the
        # SentencePiece control and unknown pieces; reserved/user-defined pieces are ordinary text.
        self.special_ids = frozenset(i for i in range(sp.get_piece_size()) if sp.is_control(i) or sp.is_unknown(i))
        # A tokenizer directory that is not Baichuan's (LLaMA-2, Yi) keeps its own HF files: they
        # say whether prompts start with BOS and hold its chat template (templates.py); `save`
        # writes them back as they were.
        self.hf_files = dict(hf_files or {})
        self.hf_config = json.loads(self.hf_files[HF_CONFIG]) if HF_CONFIG in self.hf_files else {}

    @property
    def add_bos(self) -> bool:
        """Whether a prompt starts with BOS: the directory's add_bos_token (LLaMA: true); Baichuan never."""
        return self.hf_config.get("add_bos_token", False) is True

    @property
    def chat_template(self) -> str | None:
        """The directory's Jinja chat template (HF `apply_chat_template`), if it has one."""
        if HF_TEMPLATE in self.hf_files:
            return self.hf_files[HF_TEMPLATE].decode("utf-8")
        template = self.hf_config.get("chat_template")
        if isinstance(template, list):  # [{"name": ..., "template": ...}]: HF uses "default"
            template = next((t.get("template") for t in template if t.get("name") == "default"), None)
        return template if isinstance(template, str) else None

    @property
    def stop_ids(self) -> tuple[int, ...]:
        """Ids that end a reply: EOS, and the config's eos_token where that is another token
        (Yi-Chat's "<|im_end|>", which its chat template closes every turn with)."""
        text = self.hf_config.get("eos_token")
        text = text.get("content") if isinstance(text, dict) else text
        ids = [self.eos_id]
        if isinstance(text, str):
            added = {e.get("content"): int(k) for k, e in (self.hf_config.get("added_tokens_decoder") or {}).items()
                     if isinstance(e, dict)}
            found = added.get(text, self.sp.piece_to_id(text))
            if found != self.unk_id or text == self.sp.id_to_piece(self.unk_id):
                ids.append(found)
        return tuple(dict.fromkeys(ids))

    def encode_prompt(self, text: str) -> list[int]:
        """A prompt's ids: BOS first where the tokenizer's config asks for it (LLaMA), then `encode`."""
        return ([self.bos_id] if self.add_bos else []) + self.encode(text)

    @classmethod
    def load(cls, path: str | os.PathLike) -> "Tokenizer":
        """Load a tokenizer.model file, or a directory holding one (and maybe tokenizer_config.json)."""
        path = Path(path)
        model = model_file(path)
        if not path.exists():
            raise BaichuanError(f"{path}: no such tokenizer file or directory")
        if not model.is_file():
            raise BaichuanError(f"{path}: directory has no {MODEL_FILE}")
        max_len = _read_model_max_length(model.parent / HF_CONFIG)
        hf_files = {}
        config = model.parent / HF_CONFIG
        if config.is_file() and json.loads(config.read_text(encoding="utf-8")).get("tokenizer_class") != \
                "BaichuanTokenizer":
            hf_files = {f.name: f.read_bytes() for f in map(model.parent.joinpath, HF_FILES) if f.is_file()}
        return cls(model.read_bytes(), source=str(model), model_max_length=max_len, hf_files=hf_files)

    # -- vocabulary ---------------------------------------------------------------------------

    @property
    def vocab_size(self) -> int:
        return self.sp.get_piece_size()

    @property
    def bos_id(self) -> int:
        return self.sp.bos_id()

    @property
    def eos_id(self) -> int:
        return self.sp.eos_id()

    @property
    def unk_id(self) -> int:
        return self.sp.unk_id()

    @property
    def pad_id(self) -> int:
        # The models have no pad piece (SentencePiece pad_id is -1); HF config pads with <unk> = 0.
        return self.sp.unk_id()

    def piece(self, token_id: int) -> str:
        self._check_id(token_id)
        return self.sp.id_to_piece(token_id)

    def proto(self):
        """The SentencePiece ModelProto of this model (a fresh copy: pieces with their types,
        the normalizer spec)."""
        from sentencepiece import sentencepiece_model_pb2
        proto = sentencepiece_model_pb2.ModelProto()
        proto.ParseFromString(self.model_proto)
        return proto

    @cached_property
    def without_dummy_prefix(self) -> spm.SentencePieceProcessor:
        """This model with its dummy-prefix space off (Baichuan 1's tokenizer has one): an
        encoding decodes back to exactly the text given. `sp` itself where it has none."""
        proto = self.proto()
        if not proto.normalizer_spec.add_dummy_prefix:
            return self.sp
        proto.normalizer_spec.add_dummy_prefix = False
        return spm.SentencePieceProcessor(model_proto=proto.SerializeToString())

    def piece_bytes(self, token_id: int) -> bytes:
        """The bytes id `token_id` writes into the decoded text: a byte piece's byte, any other
        piece's UTF-8 with SentencePiece's "▁" as a space (user-defined `<reserved_N>` pieces
        are written as they are); control and unknown pieces write nothing (b"")."""
        self._check_id(token_id)
        sp = self.sp
        piece = sp.id_to_piece(token_id)
        if sp.is_byte(token_id):
            return bytes([int(piece[3:-1], 16)])
        if sp.is_control(token_id) or sp.is_unknown(token_id):
            return b""
        return piece.replace("\u2581", " ").encode("utf-8")

    def id(self, piece: str) -> int:
        i = self.sp.piece_to_id(piece)
        if i == self.unk_id and piece != self.sp.id_to_piece(i):
            raise BaichuanError(f"piece {piece!r} is not in the vocabulary of {self.source}")
        return i

    @property
    def chat_role_ids(self) -> tuple[int, int]:
        """(user, assistant) = (195, 196), after checking this vocabulary reserves them.

        Both released generations keep them as user-defined `<reserved_N>` pieces (N differs:
        102/103 for Baichuan 1, 106/107 for Baichuan 2), so check for a reserved piece, not a given N.
        """
        for i in (USER_ID, ASSISTANT_ID):
            if i >= self.vocab_size or not self.sp.id_to_piece(i).startswith("<reserved_"):
                raise BaichuanError(f"{self.source}: id {i} is not a <reserved_N> piece, so this tokenizer "
                                    f"cannot carry Baichuan chat role tokens")
        return USER_ID, ASSISTANT_ID

    # -- encode / decode ----------------------------------------------------------------------

    def encode(self, text: str) -> list[int]:
        if not isinstance(text, str):
            raise BaichuanError(f"encode: expected text (str), got {type(text).__name__}")
        return self.sp.encode(text)

    def encode_batch(self, texts: Sequence[str], num_threads: int = -1) -> list[list[int]]:
        """Encode many texts at once on SentencePiece's own threads (-1: all cores)."""
        texts = list(texts)
        for i, t in enumerate(texts):
            if not isinstance(t, str):
                raise BaichuanError(f"encode_batch: texts[{i}] is {type(t).__name__}, not str")
        return self.sp.encode(texts, num_threads=num_threads)

    def decode(self, ids: Iterable[int], skip_special_tokens: bool = True) -> str:
        """Decode as the released HF wrapper (convert_tokens_to_string) does.

        Ordinary pieces are decoded in runs; each special piece (<unk>, <s>, </s>) is written
        literally. Quirk kept for compatibility: when a special follows ordinary pieces, the
        wrapper writes a space *before that run* of ordinary pieces, e.g. [Hello, </s>] ->
        " Hello</s>" and [</s>, Hello, </s>] -> "</s> Hello</s>".
        """
        ids = [int(i) for i in ids]
        for i in ids:
            self._check_id(i)
        if skip_special_tokens:
            return self.sp.decode([i for i in ids if i not in self.special_ids])
        out: list[str] = []
        run: list[int] = []
        prev_special = False
        for pos, i in enumerate(ids):
            if i in self.special_ids:
                if not prev_special and pos != 0:
                    out.append(" ")
                out.append(self.sp.decode(run))
                out.append(self.sp.id_to_piece(i))
                run, prev_special = [], True
            else:
                run.append(i)
                prev_special = False
        out.append(self.sp.decode(run))
        return "".join(out)

    def _check_id(self, i: int) -> None:
        if not 0 <= i < self.vocab_size:
            raise BaichuanError(f"token id {i} is out of range for {self.source} (vocab_size {self.vocab_size})")

    # -- save ---------------------------------------------------------------------------------

    def save(self, out_dir: str | os.PathLike) -> Path:
        """Write tokenizer.model, tokenizer_config.json, special_tokens_map.json (HF layout) and
        tokenization_baichuan.py, so `AutoTokenizer.from_pretrained(out_dir, trust_remote_code=True)`
        opens it. The fields are those of Baichuan's released tokenizer_config.json. A tokenizer
        loaded with HF files of its own (LLaMA-2, Yi) writes those back instead."""
        out = Path(out_dir)
        if self.hf_files:
            try:
                out.mkdir(parents=True, exist_ok=True)
                atomic_write_bytes(out / MODEL_FILE, self.model_proto)
                for name, data in self.hf_files.items():
                    atomic_write_bytes(out / name, data)
            except OSError as e:
                raise BaichuanError(f"{out}: cannot write the tokenizer there ({e.strerror or e})") from None
            return out
        if min(self.unk_id, self.bos_id, self.eos_id) < 0:
            raise BaichuanError(f"{self.source}: has no <unk>/<s>/</s> piece, so there is no HF config to write")

        def token(piece: str, typed: bool) -> dict:
            d = {"__type": "AddedToken"} if typed else {}
            return d | {"content": piece, "lstrip": False, "normalized": True, "rstrip": False, "single_word": True}

        unk, bos, eos = (self.sp.id_to_piece(i) for i in (self.unk_id, self.bos_id, self.eos_id))
        config = {
            "add_bos_token": False,   # Baichuan never prepends BOS (spec §4)
            "add_eos_token": False,
            "auto_map": hf.TOKENIZER_AUTO_MAP,
            "bos_token": token(bos, True),
            "clean_up_tokenization_spaces": False,
            "eos_token": token(eos, True),
            "model_max_length": self.model_max_length,
            "pad_token": token(unk, True),
            "sp_model_kwargs": {},
            "tokenizer_class": "BaichuanTokenizer",
            "unk_token": token(unk, True),
        }
        special = {"bos_token": token(bos, False), "eos_token": token(eos, False),
                   "unk_token": token(unk, False), "pad_token": token(unk, False)}
        try:
            out.mkdir(parents=True, exist_ok=True)
            atomic_write_bytes(out / MODEL_FILE, self.model_proto)
            atomic_write_bytes(out / HF_CONFIG, _json_bytes(config))
            atomic_write_bytes(out / "special_tokens_map.json", _json_bytes(special))
            hf.copy_code(out, (hf.TOKENIZER_FILE,))
        except OSError as e:
            raise BaichuanError(f"{out}: cannot write the tokenizer there ({e.strerror or e})") from None
        return out


def _read_model_max_length(path: Path) -> int:
    if not path.is_file():
        return MODEL_MAX_LENGTH
    try:
        value = json.loads(path.read_text(encoding="utf-8")).get("model_max_length", MODEL_MAX_LENGTH)
    except (ValueError, AttributeError) as e:
        raise BaichuanError(f"{path}: not a JSON object ({e})") from None
    if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
        raise BaichuanError(f"{path}: model_max_length must be a positive integer, got {value!r}")
    return value


def _json_bytes(obj: dict) -> bytes:
    return (json.dumps(obj, indent=2, ensure_ascii=False) + "\n").encode("utf-8")


def _first_line(e: BaseException) -> str:
    return str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__


# -- chat prompts (spec §5) -------------------------------------------------------------------


def _check_messages(messages) -> None:
    if not isinstance(messages, (list, tuple)) or not messages:
        raise BaichuanError("messages: expected a non-empty list of {'role': ..., 'content': ...} dicts")
    for i, m in enumerate(messages):
        if not isinstance(m, dict):
            raise BaichuanError(f"messages[{i}]: expected a dict with 'role' and 'content', got {type(m).__name__}")
        for key in ("role", "content"):
            if not isinstance(m.get(key), str):
                raise BaichuanError(f"messages[{i}].{key}: expected a string, got {type(m.get(key)).__name__}")


def _check_budget(name: str, budget: int, model_max_length: int, max_new_tokens: int) -> None:
    # A budget of 0 would make the released `ids[-0:]` keep everything; refuse it instead.
    if budget <= 0 or max_new_tokens < 0:
        raise BaichuanError(f"{name}: model_max_length {model_max_length} leaves no room for the prompt "
                            f"with max_new_tokens {max_new_tokens}")


def build_chat_input_v2(tok: Tokenizer, messages: list[dict], max_new_tokens: int = 2048,
                        model_max_length: int = MODEL_MAX_LENGTH, user_id: int = USER_ID,
                        assistant_id: int = ASSISTANT_ID) -> list[int]:
    """Baichuan2-Chat `build_chat_input` (generation_utils.py): system ids, then 195+q / 196+a per
    turn, then 196 unless the last message is the assistant's (continuation). No BOS, no EOS.

    History is kept newest round first: the latest round always, older ones while they fit in
    model_max_length - max_new_tokens - len(system); the result is left-truncated to that budget
    (which may cut into the system prompt, as released). Roles other than user/system get the
    assistant id, as released. max_new_tokens=0 is taken literally (the released code read 0 as
    "use generation_config's 2048").
    """
    _check_messages(messages)
    max_input = model_max_length - max_new_tokens
    _check_budget("build_chat_input_v2", max_input, model_max_length, max_new_tokens)
    system = ""
    rounds: list[list[dict]] = []          # each round starts at a user message
    for i, m in enumerate(messages):
        if m["role"] == "system":
            if i != 0:
                raise BaichuanError(f"messages[{i}]: a system message is only allowed at index 0")
            system = m["content"]
            continue
        if m["role"] == "user" or not rounds:
            rounds.append([])
        rounds[-1].append(m)
    system_ids = tok.encode(system)
    max_history = max_input - len(system_ids)
    history: list[int] = []
    for rnd in reversed(rounds):
        ids: list[int] = []
        for m in rnd:
            ids.append(user_id if m["role"] == "user" else assistant_id)
            ids += tok.encode(m["content"])
        if history and len(history) + len(ids) > max_history:
            break
        history = ids + history
        if len(history) >= max_history:
            break
    out = system_ids + history
    if messages[-1]["role"] != "assistant":
        out.append(assistant_id)
    return out[-max_input:]


def build_chat_input_v1(tok: Tokenizer, messages: list[dict], max_new_tokens: int = 2048,
                        model_max_length: int = MODEL_MAX_LENGTH, user_id: int = USER_ID,
                        assistant_id: int = ASSISTANT_ID, eos_after_assistant: bool = False) -> list[int]:
    """Baichuan-13B-Chat `_build_chat_input` (Aug 2023 modeling_baichuan.py).

    Budget max(model_max_length // 2, model_max_length - max_new_tokens). Messages are walked
    newest first; assistant turns wait in the pending round until their user turn; the first
    (newest) round is always taken, older ones while they fit, and the walk stops once the budget
    is reached. Assistant turns before the first user turn are therefore dropped, as released.
    Left-truncate to the budget, then append 196. Only 'user' and 'assistant' roles exist here.

    eos_after_assistant=True gives the later revision of the same file (the one with
    `_convert_to_baichuan_cache`), which puts EOS (2) after every past assistant reply; the early
    one, the default here as in spec §5.1, has no EOS. Which one a Baichuan-13B-Chat checkpoint
    was tuned on is not documented.
    """
    _check_messages(messages)
    for i, m in enumerate(messages):
        # Checked up front (released code raises only if the walk reaches the message).
        if m["role"] not in ("user", "assistant"):
            raise BaichuanError(f"messages[{i}]: role {m['role']!r} is not supported by the Baichuan-13B-Chat "
                                f"format (only 'user' and 'assistant'; use template 'baichuan2' for a system prompt)")
    budget = max(model_max_length // 2, model_max_length - max_new_tokens)
    _check_budget("build_chat_input_v1", budget, model_max_length, max_new_tokens)
    total: list[int] = []
    pending: list[int] = []
    for m in reversed(messages):
        content = tok.encode(m["content"])
        if m["role"] == "assistant":
            pending = [assistant_id] + content + ([tok.eos_id] if eos_after_assistant else []) + pending
            continue
        rnd = [user_id] + content + pending
        if total and len(total) + len(rnd) > budget:
            break
        total = rnd + total
        if len(total) >= budget:
            break
        pending = []
    return total[-budget:] + [assistant_id]


CHAT_TEMPLATES = {"baichuan2": build_chat_input_v2, "baichuan": build_chat_input_v1}


def chat_template_for(tok: Tokenizer) -> str:
    """The directory's own Jinja template where it has one (LLaMA-2-Chat, Yi-Chat: 'jinja');
    Baichuan-13B-Chat's builder for the Baichuan 1 tokenizer (role piece <reserved_102> at 195);
    Baichuan 2's for everything else (Baichuan 2 and the tokenizers this package trains)."""
    if tok.chat_template is not None:
        return "jinja"
    return "baichuan" if tok.piece(USER_ID) == "<reserved_102>" else "baichuan2"


def build_chat_input(tok: Tokenizer, messages: list[dict], template: str = "baichuan2", **kwargs) -> list[int]:
    """Dispatch by template name: 'baichuan2' (Baichuan2-Chat) or 'baichuan' (Baichuan-13B-Chat),
    the names LLaMA-Factory uses for the same two formats, or 'jinja' (the tokenizer's own
    chat_template, rendered and tokenized as HF does: templates.py)."""
    if template == "jinja":
        from baichuan.templates import build_chat_input_jinja
        _check_messages(messages)
        return build_chat_input_jinja(tok, messages)
    if template not in CHAT_TEMPLATES:
        raise BaichuanError(f"template {template!r} is unknown; choose one of {sorted(CHAT_TEMPLATES) + ['jinja']}")
    return CHAT_TEMPLATES[template](tok, messages, **kwargs)


class ContextTooLong(BaichuanError):
    """The prompt and the reply's budget do not fit the context (OpenAI's context_length_exceeded);
    `field` is what to change: the messages, or the length asked for."""

    def __init__(self, message: str, field: str = "messages"):
        super().__init__(message)
        self.field = field


def fit_chat(tok: Tokenizer, messages: list[dict], template: str, max_new_tokens: int, max_len: int,
             shrink: bool = False, length_name: str = "max_new_tokens") -> tuple[list[int], int]:
    """A conversation's prompt ids and the reply's token budget, for serving: the system prompt,
    the newest turn (from the last user message on) and as many whole earlier rounds as fit
    before `max_new_tokens`, in the template's format. The released builders instead fill their
    budget and cut from the left, which can cut into the system prompt or the question, and
    Baichuan-13B-Chat's budget (at least half the context) can leave too little for the reply.
    With `shrink` (no length was asked for), a budget that leaves the newest turn no room is
    lowered to what it leaves, instead of refused."""
    _check_messages(messages)
    late = next((i for i, m in enumerate(messages) if m["role"] == "system" and i), None)
    if late is not None:
        raise BaichuanError(f"messages[{late}]: a system message is only allowed at index 0")
    budget = max_len - max_new_tokens
    if budget < 2 and not shrink:
        raise ContextTooLong(f"{length_name} {max_new_tokens} leaves no room for a prompt in the "
                             f"{max_len}-token context", field=length_name)
    # each round begins at a user message; tool results (toolcalls.py) continue the round of their call
    starts = [i for i, m in enumerate(messages) if m["role"] == "user" and not m.get("tool")]
    if not starts:
        raise BaichuanError("the conversation needs a user message")
    system = messages[:1] if messages[0]["role"] == "system" else []

    def build(start: int) -> list[int]:  # whole rounds from `start`: nothing for the builder to cut
        return build_chat_input(tok, system + messages[start:], template=template, max_new_tokens=0,
                                model_max_length=10 ** 9)
    ids = build(starts[-1])
    if len(ids) > budget and shrink and len(ids) < max_len:
        max_new_tokens, budget = max_len - len(ids), len(ids)
    if len(ids) > budget:
        room = (f"the {max_len}-token context leaves no room for a reply" if len(ids) >= max_len else
                f"the context is {max_len}") if shrink else \
            f"{max_len} - {length_name} {max_new_tokens} = {budget} are available"
        raise ContextTooLong(f"the prompt needs {len(ids)} tokens but {room}")
    for start in reversed(starts[:-1]):  # older rounds, newest first, while they fit
        longer = build(start)
        if len(longer) > budget:
            break
        ids = longer
    return ids, max_new_tokens


# -- training (spec §4, §7.3) -----------------------------------------------------------------

RESERVED_FIRST, RESERVED_LAST, RESERVED_OFFSET = 12, 299, 89   # <reserved_N> has id N + 89
ATOMIC_FIRST_ID, ATOMIC_LAST_ID = 7, 100
MAX_SENTENCE_BYTES = 16384     # SentencePiece silently skips longer sentences, so we split lines first

# Pieces that are always one token (user-defined symbols are matched in raw text before BPE and
# never merged). Chosen for zh/en prose and code: full-width digits (Baichuan 2 does the same, as
# identity normalization keeps them distinct from ASCII), the CJK punctuation that is otherwise
# 3 bytes each, the doubled "……" and "——" (the standard Chinese ellipsis and dash), a few markup
# tokens Baichuan also reserved, and "\r". ASCII operators are left to BPE: making "-" or "=" atomic would
# forbid merges such as "->", "==", "---".
ATOMIC_PIECES = (
    tuple("０１２３４５６７８９")
    + tuple("，。！？：；、“”‘’（）《》〈〉【】「」『』·～￥") + ("…", "……", "—", "——")
    + ("```", "<!--", "-->", "---", "<br>", "<br/>", "<p>", "</p>", "\r")
)


def reserved_layout() -> list[str]:
    """The user-defined symbols of a tokenizer we train, in id order: element k gets id k + 3.

    Ids 0-2 are <unk>, <s>, </s> (SentencePiece control pieces). Then, matching Baichuan 2 at every
    id that code relies on:
      3 <SEP>, 4 <CLS>, 5 "\\n", 6 "\\t"                          (same as both Baichuan releases)
      7..100   ATOMIC_PIECES, padded with <unused_K>               (Baichuan 2: tags, punctuation)
      101..388 <reserved_12>..<reserved_299>, id = N + 89          (same names and ids as Baichuan 2)
    so 195 = <reserved_106> (user) and 196 = <reserved_107> (assistant), which is what
    generation_config.json and LLaMA-Factory's "baichuan2" template expect. Byte pieces and the
    learned BPE pieces follow from id 389.
    """
    slots = ATOMIC_LAST_ID - ATOMIC_FIRST_ID + 1
    assert ATOMIC_LAST_ID + 1 == RESERVED_FIRST + RESERVED_OFFSET
    assert len(ATOMIC_PIECES) <= slots and len(set(ATOMIC_PIECES)) == len(ATOMIC_PIECES)
    atomic = list(ATOMIC_PIECES) + [f"<unused_{k}>" for k in range(slots - len(ATOMIC_PIECES))]
    reserved = [f"<reserved_{n}>" for n in range(RESERVED_FIRST, RESERVED_LAST + 1)]
    return ["<SEP>", "<CLS>", "\n", "\t"] + atomic + reserved


def _split_sentences(line: str, max_bytes: int) -> Iterator[str]:
    """Cut a line into pieces of at most max_bytes UTF-8 bytes, at sentence ends where possible."""
    if len(line) * 4 <= max_bytes or len(line.encode("utf-8")) <= max_bytes:
        yield line
        return
    buf, size = [], 0
    for sent in _SENTENCE_END.split(line):
        n = len(sent.encode("utf-8"))
        if size + n > max_bytes and buf:
            yield "".join(buf)
            buf, size = [], 0
        if n <= max_bytes:
            buf.append(sent)
            size += n
            continue
        start = cut = 0                    # one sentence over the cap: hard cut by characters
        for j, ch in enumerate(sent):
            w = len(ch.encode("utf-8"))
            if cut + w > max_bytes:
                yield sent[start:j]
                start, cut = j, 0
            cut += w
        buf, size = [sent[start:]], cut
    if buf:
        yield "".join(buf)


_SENTENCE_END = re.compile(r"(?<=[。！？；…!?;])|(?<=\.)(?=\s)")


class _CorpusReader:
    """Feeds SentencePiece one line at a time (never the whole corpus in memory).

    SentencePiece turns an exception raised inside the iterator into a bare RuntimeError, so the
    real error is kept in `error` and re-raised by train_tokenizer.
    """

    def __init__(self, files: list[Path], progress: bool):
        self.files = files
        self.progress = progress
        self.error: BaichuanError | None = None
        self.sentences = 0

    def __iter__(self) -> Iterator[str]:
        total = sum(f.stat().st_size for f in self.files)
        with tqdm(total=total, unit="B", unit_scale=True, desc="tokenizer corpus", disable=not self.progress) as bar:
            for path in self.files:
                unreported = 0      # bytes read but not yet shown: one bar update per MiB, not per line
                with open(path, "rb") as fh:
                    for lineno, raw in enumerate(fh, 1):
                        unreported += len(raw)
                        if unreported >= 1 << 20:
                            bar.update(unreported)
                            unreported = 0
                        try:
                            line = raw.decode("utf-8")
                        except UnicodeDecodeError as e:
                            self.error = BaichuanError(
                                f"{path}: line {lineno} is not valid UTF-8 (byte {e.start + 1} of the line); "
                                f"tokenizer training reads UTF-8 text only")
                            raise self.error from None
                        line = line.rstrip("\r\n")
                        if lineno == 1:
                            line = line.removeprefix("\ufeff")   # a UTF-8 BOM is not text
                        if not line:
                            continue
                        for sent in _split_sentences(line, MAX_SENTENCE_BYTES):
                            self.sentences += 1
                            yield sent
                bar.update(unreported)


def train_tokenizer(files: Sequence[str | os.PathLike], out_dir: str | os.PathLike, vocab_size: int = 64000,
                    normalization: str = "identity", max_piece_length: int = 32,
                    character_coverage: float = 0.9999, input_sentence_size: int = 10_000_000,
                    num_threads: int | None = None, add_dummy_prefix: bool = False,
                    model_max_length: int = MODEL_MAX_LENGTH, progress: bool = True,
                    verbose: bool = False) -> Tokenizer:
    """Train a SentencePiece BPE tokenizer the Baichuan 2 way and save it to out_dir.

    Options as in the released Baichuan 2 model: byte_fallback, split_digits, no dummy prefix,
    no whitespace collapsing, whitespace-only pieces (code indentation), pieces up to 32
    characters, identity normalization ("nmt_nfkc" gives Baichuan 1's NFKC instead), unk/bos/eos
    = 0/1/2 and no pad piece, then the `reserved_layout()` user-defined symbols. Files are UTF-8
    text, one or more sentences/paragraphs per line; input_sentence_size lines are sampled when
    there are more (Baichuan 1 used 10M, Baichuan 2 15M).
    """
    if normalization not in ("identity", "nmt_nfkc"):
        raise BaichuanError(f"normalization must be 'identity' or 'nmt_nfkc', got {normalization!r}")
    paths = [Path(f) for f in files]
    if not paths:
        raise BaichuanError("train_tokenizer: no input files given")
    for p in paths:
        if not p.is_file():
            raise BaichuanError(f"{p}: no such file" + (" (it is a directory; pass the files in it)" if p.is_dir() else ""))
    symbols = reserved_layout()
    fixed = 3 + len(symbols) + 256        # control pieces + layout + byte pieces
    if vocab_size <= fixed:
        raise BaichuanError(f"vocab_size {vocab_size} is too small: the Baichuan layout already takes {fixed} ids "
                            f"(3 control, {len(symbols)} user-defined, 256 byte pieces) before any learned piece")

    reader = _CorpusReader(paths, progress)
    model = io.BytesIO()
    try:
        spm.SentencePieceTrainer.train(
            sentence_iterator=iter(reader), model_writer=model, model_type="bpe", vocab_size=vocab_size,
            normalization_rule_name=normalization, add_dummy_prefix=add_dummy_prefix,
            remove_extra_whitespaces=False, split_digits=True, byte_fallback=True,
            allow_whitespace_only_pieces=True, max_sentencepiece_length=max_piece_length,
            character_coverage=character_coverage, input_sentence_size=input_sentence_size,
            shuffle_input_sentence=True, max_sentence_length=MAX_SENTENCE_BYTES,
            num_threads=num_threads or os.cpu_count() or 1, user_defined_symbols=symbols,
            unk_id=0, bos_id=1, eos_id=2, pad_id=-1,
            minloglevel=0 if verbose else 2)
    except RuntimeError as e:
        if reader.error is not None:
            raise reader.error from None
        if reader.sentences == 0:
            raise BaichuanError(f"no training text in {', '.join(map(str, paths))}") from None
        short = re.search(r"Vocabulary size is smaller than required_chars\. (\d+) vs (\d+)", str(e))
        if short:
            raise BaichuanError(
                f"vocab_size {vocab_size} cannot hold the {int(short.group(2)) - fixed} distinct characters that "
                f"character_coverage {character_coverage} keeps plus {fixed} fixed pieces; raise vocab_size above "
                f"{short.group(2)} or lower character_coverage (--character-coverage)") from None
        raise BaichuanError(f"SentencePiece training failed on {paths[0]}{' and others' if len(paths) > 1 else ''}: "
                            f"{_first_line(e)}") from None

    tok = Tokenizer(model.getvalue(), source=str(Path(out_dir) / MODEL_FILE), model_max_length=model_max_length)
    _verify_layout(tok, symbols)
    tok.save(out_dir)
    return tok


def _verify_layout(tok: Tokenizer, symbols: list[str]) -> None:
    # Guard against a SentencePiece version that lays out user-defined symbols differently: chat
    # prompts would silently use the wrong role ids.
    expected = {0: "<unk>", 1: "<s>", 2: "</s>"} | {k + 3: s for k, s in enumerate(symbols)}
    wrong = [(i, p, tok.sp.id_to_piece(i)) for i, p in expected.items() if tok.sp.id_to_piece(i) != p]
    if wrong:
        i, want, got = wrong[0]
        raise BaichuanError(f"trained tokenizer has {got!r} at id {i}, expected {want!r} "
                            f"({len(wrong)} ids differ from reserved_layout())")
    assert tok.piece(USER_ID) == "<reserved_106>" and tok.piece(ASSISTANT_ID) == "<reserved_107>"
    if tok.sp.piece_to_id("<0x00>") == tok.unk_id or tok.sp.piece_to_id("<0xFF>") == tok.unk_id:
        raise BaichuanError("trained tokenizer lacks byte-fallback pieces <0x00>..<0xFF>")
