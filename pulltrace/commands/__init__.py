"""The one-shot commands behind the CLI: ``ls``, ``wait``, and the output formats they share."""
