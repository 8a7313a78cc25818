"""Delivery: the outbox worker, message rendering and the channel drivers."""
