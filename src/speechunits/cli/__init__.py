"""Command-line interface: one module per command, each a thin layer over library code."""
