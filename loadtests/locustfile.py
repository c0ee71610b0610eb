"""Locust scenario for soak and load tests by hand (not run in CI).

    GANDALF_BENCH_KEY=gnd_... locust -f loadtests/locustfile.py --host http://127.0.0.1:8080

Each user sends chat completions through the gateway over plain HTTP: mostly plain ones and
some streamed ones (`"stream": true`; the whole SSE stream is read, so the reported time is
the time to `data: [DONE]`). The model alias defaults to `bench-model`
(`GANDALF_BENCH_MODEL` overrides it).
"""

from __future__ import annotations

import os
from typing import Any

from locust import FastHttpUser, between, task

KEY = os.environ.get("GANDALF_BENCH_KEY", "")
MODEL = os.environ.get("GANDALF_BENCH_MODEL", "bench-model")
MESSAGES = [
    {"role": "system", "content": "You are a helpful assistant."},
    {"role": "user", "content": "Explain the theory of relativity in one sentence, please."},
]


class ChatUser(FastHttpUser):
    """A client of the OpenAI-compatible API: 3 plain chats for every streamed one."""

    wait_time = between(0.05, 0.5)

    def on_start(self) -> None:
        if not KEY:
            raise RuntimeError("set GANDALF_BENCH_KEY to a gateway API key")
        self.headers = {"Authorization": f"Bearer {KEY}"}

    def _chat(self, stream: bool) -> None:
        body: dict[str, Any] = {"model": MODEL, "messages": MESSAGES, "temperature": 0.7}
        if stream:
            body["stream"] = True
        name = "chat (stream)" if stream else "chat"
        with self.client.post(
            "/v1/chat/completions", json=body, headers=self.headers, name=name, catch_response=True
        ) as reply:
            text = reply.text or ""
            if reply.status_code != 200:
                reply.failure(f"HTTP {reply.status_code}: {text[:200]}")
            elif stream and not text.rstrip().endswith("data: [DONE]"):
                reply.failure("stream did not end with data: [DONE]")
            elif not stream and '"choices"' not in text:
                reply.failure("no choices in the reply")

    @task(3)
    def chat(self) -> None:
        self._chat(stream=False)

    @task(1)
    def chat_stream(self) -> None:
        self._chat(stream=True)
