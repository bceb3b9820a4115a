"""Answering: question → Answer.

    question.py   cleaning a question; what type of answer it asks for
    condense.py   follow-ups → standalone queries (the documented rule)
    retrieve.py   dense + BM25 retrieval, fused with RRF
    extractive.py the default answerer (no LLM)
    llm/          the optional LLM answerer and its citation check
    pipeline.py   `QA`: the one answer path every front end uses
"""
