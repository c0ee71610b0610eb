"""Load tests: `python -m loadtests.bench` (wrk-driven hot-path benchmark) and a locust file."""
