"""The feed registry: what each channel system delivers (see registry.yml)."""

from crm.feeds.registry import Column, Feed, Registry, load_registry

__all__ = ["Column", "Feed", "Registry", "load_registry"]
