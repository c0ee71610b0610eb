"""Gandalf for Python: the data plane (and the modules the control plane shares)."""
