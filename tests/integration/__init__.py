"""Integration and end-to-end tests: real processes on loopback."""
