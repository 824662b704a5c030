"""Typer sub-commands; each module is a thin wrapper over a library function."""
