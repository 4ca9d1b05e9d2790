"""Speed, memory and training-behaviour measurements that print JSON; run each from the
repository root as ``python -m benchmarks.<name> --help``."""
