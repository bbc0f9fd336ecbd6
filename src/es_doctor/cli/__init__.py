"""The command line: thin typer apps that parse, call the core, render and return an exit code."""
