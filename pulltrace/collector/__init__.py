"""``pulltrace collector``: the in-cluster aggregator that agents report to and clients read from.

Nothing is imported here, so that the store (used in-process by the demo simulator and the TUI)
can be loaded without pulling in Starlette, uvicorn or prometheus-client.
"""
