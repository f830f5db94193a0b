"""The agent role: read one node's containerd and report its pulls to the collector.

``containerd`` and ``sockets`` reach the daemon, ``manifests`` names downloads after images,
``tracker`` turns samples into pulls, ``daemon`` reports them, and ``health`` answers kubelet.
"""
