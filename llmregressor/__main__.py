"""``python -m llmregressor``: the command line of :mod:`llmregressor.cli`."""

from .cli import main

raise SystemExit(main())
