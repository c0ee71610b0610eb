"""Unit tests of the response cache."""
