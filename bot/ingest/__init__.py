"""Getting documents into the index: load (file → text) → chunk → embed → store, incrementally.

    load.py      a file → a Document (text, headings, pages)
    chunk.py     a Document → Chunks with offsets, section and page
    discover.py  which files, the names they are cited by, their hashes
    manifest.py  per-file state and index settings; the ingest lock
    pipeline.py  `ingest()` and the `Ingestor` that runs it
    repair.py    crash repair, `--rebuild`
    status.py    cheap checks: does an index exist, did the corpus change, stats
    watch.py     `ingest --watch`

No imports here: `bot.ingest.load` must not pull in the embedding model or Chroma.
"""
