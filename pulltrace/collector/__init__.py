"""``pulltrace collector``: the in-cluster aggregator that agents report to and clients read from.

The merge core it serves (``pulltrace.pullstore``) lives outside this package, because the demo
runs it in-process too; nothing here is imported by the clients or the terminal UI.
"""
