"""``python -m sigprop COMMAND``: the same command line as the ``sigprop`` script (:mod:`sigprop.cli`)."""

from sigprop.cli import main

main()
