"""One module per ``attnflow`` subcommand; ``attnflow.cli`` wires them into the app."""
