"""Benchmarks and checks that live outside the shipped packages (run from the repository root)."""
