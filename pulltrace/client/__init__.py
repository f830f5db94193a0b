"""Client side of ``watch``: what a data source yields and the store that applies it."""
