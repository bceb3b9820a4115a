"""`qabot eval`: gold sets (gold.py) and how answers are scored against them (scoring.py)."""
