"""Speed and quality benchmarks that write JSON (run as ``python -m benchmarks.<name>``)."""
