"""Search-augmented answers over a folder of documents: `baichuan index DIR`, `baichuan ask`.

    sources.py   which files count and their text (.txt .md .html .jsonl), skips with reasons
    passages.py  paragraph/sentence-bounded passages with exact character offsets
    terms.py     text -> BM25 terms (jieba or character bigrams for Chinese, words for English)
    build.py     build the index (incremental, atomic): a pipeline of stages
    index.py     the index folder's layout, loading it; BM25 search
    dense.py     optional embeddings from a local sentence-transformers model, rank fusion
    answer.py    prompt within the context budget, citations, "I don't know"
    evaluate.py  the bundled QA set, recall@k and citation accuracy
    command.py   the `index` and `ask` subcommands
The package imports nothing, so the command line lists `index` and `ask` without loading numpy or
the index code. The server's POST /v1/ask (baichuan/infer/server.py) calls answer.prepare / answer.finish.
"""
