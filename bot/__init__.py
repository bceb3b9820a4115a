"""qabot: ask questions of a folder of documents, get short answers with cited passages."""

__version__ = "0.1.0"
