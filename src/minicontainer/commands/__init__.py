"""One module per subcommand; cli.py imports them lazily."""
