"""Checkpoint files read by more than one package (data and models): readers only, no model classes."""
