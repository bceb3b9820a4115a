"""What users tell us and what the bot must remember: the SQLite stores of votes (votes.py) and
of Discord conversations (conversations.py), and `qabot feedback` (command.py)."""
