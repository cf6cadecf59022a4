"""The `sluice` command line: one home for every command, its usage errors and exit codes."""
