"""The `qabot` command line. Thin: parse flags, call the shared steps, print.

    main.py            the click group; adds every command
    options.py         options shared by commands, UserError
    pipeline.py        ingest-if-needed and open the answer pipeline
    index_commands.py  ingest, stats
    ask.py, eval_command.py, chat.py   the question commands
    terminal.py        answers rendered for a terminal (rich)
"""
