"""The `ledger` command line (`cli.main:main`).

`cli.main` assembles the commands: `serve`, `worker`, `remap`, `reconcile` there, and the
groups `keys`, `mappings`, `projections`, `channels` from their modules, each of which imports
only `cli.common`. `bench` comes in through its one entry, `bench.cli.bench_app`. Commands import
what they run inside their bodies, so `ledger --help` does not load the whole service.
"""
