"""Mikolov's rnnlm-0.4b: its model files, conversion, its exact test arithmetic."""
