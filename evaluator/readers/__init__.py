"""Readers and validators for references and predictions."""
