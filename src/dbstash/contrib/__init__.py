"""Integrations with the frameworks dbstash's users live in (each imports its framework on use)."""
