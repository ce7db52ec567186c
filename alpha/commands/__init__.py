"""One module per ``alpha`` subcommand (see ``alpha.cli``)."""
