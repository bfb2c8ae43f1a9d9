"""Evaluation: correlation metrics, the paper's protocols and the results table, preference accuracy."""
