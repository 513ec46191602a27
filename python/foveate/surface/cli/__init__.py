"""The command-line front door: `foveate COMMAND` (main.py builds the parser), one module per
command (its flags and what it runs), the flags several commands share in flags.py. The CLI
may import the other front doors (it starts the server, and reads on Ray); none imports it."""
from .main import main

__all__ = ["main"]
