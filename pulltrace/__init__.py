"""Live container image pull progress for Kubernetes."""

__version__ = "0.1.0"
