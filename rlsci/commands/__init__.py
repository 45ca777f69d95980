"""One module per `rlsci` subcommand. Each defines `HELP`, `add_arguments(parser)` and
`run(args) -> int`; heavy imports stay inside `run` so that `rlsci --help` is instant."""
