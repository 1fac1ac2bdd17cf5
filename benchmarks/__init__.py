"""Scripts that measure Wayfinder side by side with references and write BENCHMARKS.md."""
