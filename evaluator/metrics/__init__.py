"""Metrics: segmentation (per case, per label) and classification (over cases)."""
