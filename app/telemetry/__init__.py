"""Logging, metrics and tracing setup."""
