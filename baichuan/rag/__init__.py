"""Search-augmented answers over a folder of documents: `baichuan index DIR`, `baichuan ask`.

    sources.py   which files count and their text (.txt .md .html .jsonl), skips with reasons
    passages.py  paragraph/sentence-bounded passages with exact character offsets
    terms.py     text -> BM25 terms (jieba or character bigrams for Chinese, words for English)
    index.py     build (incremental, atomic) and load the index; BM25 search
    dense.py     optional embeddings from a local sentence-transformers model, rank fusion
    answer.py    prompt within the context budget, citations, "I don't know"
    evaluate.py  the bundled QA set, recall@k and citation accuracy
    command.py   the `index` and `ask` subcommands
The server's POST /v1/ask (baichuan/infer/server.py) calls answer.prepare / answer.finish.
"""

from baichuan.rag.index import BuildReport, Hit, Index, build_index, load_index
from baichuan.rag.terms import Analyzer

__all__ = ["Analyzer", "BuildReport", "Hit", "Index", "build_index", "load_index"]
