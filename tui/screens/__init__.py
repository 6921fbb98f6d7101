"""Screens of the nettrace TUI, one per module (pushed over the main view)."""
