"""Evaluation: metrics, comparisons and reports."""
