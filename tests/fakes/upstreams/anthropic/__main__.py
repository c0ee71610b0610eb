"""`python -m tests.fakes.upstreams.anthropic`: serve the fake with Granian until SIGINT/SIGTERM.

The package's `app` is loaded by the workers only, after `server.serve` has put the key in
their environment.
"""

from tests.fakes.upstreams import server
from tests.fakes.upstreams.anthropic.wire import CLI

server.serve("tests.fakes.upstreams.anthropic:app", CLI)
