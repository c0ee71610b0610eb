"""`python -m tests.fakes.upstreams.openai`: serve the fake with Granian until SIGINT/SIGTERM.

The package's `app` is loaded by the workers only, after `server.serve` has put the key in
their environment.
"""

from tests.fakes.upstreams import server
from tests.fakes.upstreams.openai.wire import CLI

server.serve("tests.fakes.upstreams.openai:app", CLI)
