"""`python -m tests.fakes.upstreams.azure`: serve the fake with Granian until SIGINT/SIGTERM.

The package's `app` is loaded by the workers only, after `server.serve` has put the key in
their environment.
"""

from tests.fakes.upstreams import server
from tests.fakes.upstreams.azure.wire import CLI

server.serve("tests.fakes.upstreams.azure:app", CLI)
