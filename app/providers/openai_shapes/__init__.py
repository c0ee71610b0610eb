"""The OpenAI wire shapes that every translating adapter (Anthropic, Gemini, Ollama) shares.

Clients speak OpenAI's chat completions whatever vendor answers, so each translating adapter
decodes the same request and writes the same answers, chunks and error bodies. They live here
once: `request` (what the adapters decode), `answer` (completions, embeddings, usage, errors),
`stream` (SSE in and OpenAI chunk frames out) and `adapter` (the I/O plumbing they share).
Vendor shapes stay in each vendor's package.
"""
