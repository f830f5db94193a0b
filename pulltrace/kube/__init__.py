"""Kubernetes correlation: which pods wait for which pull, and pulls kubelet reports itself.

Nothing here imports the ``kubernetes`` client at import time; only ``connect`` and the watch
loops do, so commands that never talk to an API server do not pay for it.
"""
