"""Per-key limits shared by every worker: RPM and TPM token buckets and budgets, kept in Redis.

Each step is one atomic Lua script on Redis's clock (`lua/admit.lua`, `lua/settle.lua`), queued
in the caller's pipeline so it costs no extra round trip.
"""
