"""The ``spine`` command line: a thin Typer shell over ``market_spine.services``."""
