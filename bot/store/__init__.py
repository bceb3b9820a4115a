"""Where chunks and vectors live: the Chroma collection (embedded or on a server), `chroma.py`."""
