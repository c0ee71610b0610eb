"""Test doubles: fake providers for unit tests, fake upstream servers for real-process tests."""
