"""Data: reference class lists and prompt templates (``reference/``)."""
