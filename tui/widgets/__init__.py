"""Widgets of the nettrace TUI, one per module."""
