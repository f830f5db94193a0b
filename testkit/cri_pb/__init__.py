"""Generated CRI runtime.v1 messages; see README.md for how to regenerate."""
