"""Groups of ``connector`` subcommands, each registered on the main group by ``cli.main``."""
