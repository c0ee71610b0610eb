"""The response cache: fingerprints, and cached answers replayed as JSON or as SSE."""
