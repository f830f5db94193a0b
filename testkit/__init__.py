"""End-to-end test infrastructure: real containerd, a real registry, and a throttling proxy.

Everything binds to 127.0.0.1 and lives in short temp dirs under /tmp, so tests never touch the
host's containerd or the network.
"""
