"""``pulltrace watch``: a k9s-style terminal UI over any ``pulltrace.client.source.Source``."""
