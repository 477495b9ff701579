"""The benchmark: concurrent streaming load against the model API, direct and through the
full stack, per engine. Run with `make bench` or `python -m bench.run --help`."""
