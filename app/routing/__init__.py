"""Routing: model alias to ordered targets, and failover across them."""
