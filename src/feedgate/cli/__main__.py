"""``python -m feedgate.cli``: the ``feedgate`` command without its console script."""

from feedgate.cli import main

main()
