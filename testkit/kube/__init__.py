"""A Kubernetes API server double that speaks the real list and watch wire format, and the
objects it serves; used by the tests and by bench/."""
