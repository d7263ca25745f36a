"""BaichuanTokenizer for `AutoTokenizer.from_pretrained(dir, trust_remote_code=True)`.

Shipped inside model and tokenizer directories written by the `baichuan` package. Self-contained
on purpose (imports only sentencepiece, transformers and the standard library): HF copies this
file into its module cache and imports it there.

A slow tokenizer over the directory's SentencePiece `tokenizer.model`, behaving like the released
wrapper and like `baichuan.tokenizer.Tokenizer`:
  - text -> raw SentencePiece pieces -> ids; no BOS or EOS unless add_bos_token / add_eos_token
    (both default to False here, as in the released tokenizer_config.json);
  - the special tokens are <unk>, <s>, </s> (pad is <unk>). Unlike raw SentencePiece, a literal
    "<s>" in the text becomes id 1 (HF splits special tokens out first), as released;
  - decode writes special tokens literally, with the released spacing quirk: a space before a
    special token that follows ordinary text.
The SentencePiece model is loaded before the base class initializes, which is what the released
file got wrong under transformers >= 4.34 ("object has no attribute 'sp_model'").
"""

from __future__ import annotations

import os
import shutil

import sentencepiece as spm
from transformers import PreTrainedTokenizer

VOCAB_FILES_NAMES = {"vocab_file": "tokenizer.model"}


class BaichuanTokenizer(PreTrainedTokenizer):
    vocab_files_names = VOCAB_FILES_NAMES
    model_input_names = ["input_ids", "attention_mask"]

    def __init__(self, vocab_file, unk_token="<unk>", bos_token="<s>", eos_token="</s>", pad_token=None,
                 sp_model_kwargs=None, add_bos_token=False, add_eos_token=False,
                 clean_up_tokenization_spaces=False, **kwargs):
        self.vocab_file = vocab_file
        self.sp_model_kwargs = sp_model_kwargs or {}
        self.add_bos_token = add_bos_token
        self.add_eos_token = add_eos_token
        self.sp_model = self._load(vocab_file, self.sp_model_kwargs)
        super().__init__(unk_token=unk_token, bos_token=bos_token, eos_token=eos_token, pad_token=pad_token,
                         sp_model_kwargs=self.sp_model_kwargs, add_bos_token=add_bos_token,
                         add_eos_token=add_eos_token, clean_up_tokenization_spaces=clean_up_tokenization_spaces,
                         **kwargs)

    @staticmethod
    def _load(vocab_file, sp_model_kwargs):
        sp = spm.SentencePieceProcessor(**sp_model_kwargs)
        sp.Load(vocab_file)
        return sp

    # a SentencePieceProcessor does not pickle; reload it from the file instead
    def __getstate__(self):
        state = self.__dict__.copy()
        state["sp_model"] = None
        return state

    def __setstate__(self, state):
        self.__dict__.update(state)
        self.sp_model = self._load(self.vocab_file, self.sp_model_kwargs)

    # -- vocabulary ---------------------------------------------------------------------------

    @property
    def vocab_size(self):
        return self.sp_model.get_piece_size()

    def get_vocab(self):
        vocab = {self.sp_model.id_to_piece(i): i for i in range(self.vocab_size)}
        vocab.update(self.added_tokens_encoder)
        return vocab

    def _tokenize(self, text, **kwargs):
        return self.sp_model.encode(text, out_type=str)

    def _convert_token_to_id(self, token):
        return self.sp_model.piece_to_id(token)

    def _convert_id_to_token(self, index):
        return self.sp_model.id_to_piece(index)

    def convert_tokens_to_string(self, tokens):
        """Runs of ordinary pieces through SentencePiece, special tokens written as they are."""
        specials = set(self.all_special_tokens)
        out, run, after_special = [], [], False
        for i, token in enumerate(tokens):
            if token in specials:
                if i and not after_special:
                    out.append(" ")
                out.append(self.sp_model.decode(run))
                out.append(token)
                run, after_special = [], True
            else:
                run.append(token)
                after_special = False
        out.append(self.sp_model.decode(run))
        return "".join(out)

    # -- special tokens -----------------------------------------------------------------------

    def build_inputs_with_special_tokens(self, token_ids_0, token_ids_1=None):
        bos = [self.bos_token_id] if self.add_bos_token else []
        eos = [self.eos_token_id] if self.add_eos_token else []
        ids = bos + list(token_ids_0) + eos
        if token_ids_1 is not None:
            ids += bos + list(token_ids_1) + eos
        return ids

    def get_special_tokens_mask(self, token_ids_0, token_ids_1=None, already_has_special_tokens=False):
        if already_has_special_tokens:
            special = set(self.all_special_ids)
            return [int(i in special) for i in list(token_ids_0) + list(token_ids_1 or [])]
        bos = [1] if self.add_bos_token else []
        eos = [1] if self.add_eos_token else []
        mask = bos + [0] * len(token_ids_0) + eos
        if token_ids_1 is not None:
            mask += bos + [0] * len(token_ids_1) + eos
        return mask

    def create_token_type_ids_from_sequences(self, token_ids_0, token_ids_1=None):
        return [0] * len(self.build_inputs_with_special_tokens(token_ids_0, token_ids_1))

    # -- saving -------------------------------------------------------------------------------

    def save_vocabulary(self, save_directory, filename_prefix=None):
        if not os.path.isdir(save_directory):
            raise ValueError(f"{save_directory} is not a directory")
        out = os.path.join(save_directory, (filename_prefix + "-" if filename_prefix else "") + "tokenizer.model")
        if os.path.isfile(self.vocab_file):
            if os.path.abspath(self.vocab_file) != os.path.abspath(out):
                shutil.copyfile(self.vocab_file, out)
        else:
            with open(out, "wb") as f:
                f.write(self.sp_model.serialized_model_proto())
        return (out,)
