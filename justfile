# Gandalf for Python — developer commands. `just --list` shows them all.

venv := ".venv"
py := venv / "bin/python"

# Create the virtualenv and install the project with its development tools.
install:
    test -x {{py}} || python3 -m venv {{venv}}
    {{py}} -m pip install -q -e '.[dev]'

# Start the gateway on a config file (default: the embedded default).
run config="": install
    {{venv}}/bin/gandalf run {{ if config == "" { "" } else { "--config " + config } }}

# The whole test suite: unit, integration and end-to-end, against real processes.
test *args: install
    {{py}} -m pytest {{args}}

# Only the fast unit tests.
unit *args: install
    {{py}} -m pytest tests/unit {{args}}

# ruff (lint + format check), mypy --strict and the import contracts.
lint: install
    {{venv}}/bin/ruff check .
    {{venv}}/bin/ruff format --check .
    {{venv}}/bin/mypy app workers storage
    {{venv}}/bin/lint-imports

# Format the code.
fmt: install
    {{venv}}/bin/ruff format .
    {{venv}}/bin/ruff check --fix .

# The hot-path benchmark: fake upstream + gateway, prints a markdown table.
bench *args: install
    {{py}} -m loadtests.bench {{args}}
