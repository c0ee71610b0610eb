"""Fake provider servers on loopback, shared by tests, the benchmark and load tests."""
