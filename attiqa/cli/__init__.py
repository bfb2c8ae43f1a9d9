"""Command line: one module per ``python -m attiqa`` subcommand, each with ``main(argv) -> int``."""
