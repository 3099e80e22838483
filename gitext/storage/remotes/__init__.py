"""Remotes: where a store's objects are kept away from this machine (base: the interface)."""
