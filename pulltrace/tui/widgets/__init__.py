"""Widgets shared by the screens of ``watch``."""
