"""Scoring: pure functions from a response text to an answer and a score.

Reasoning separation, number/label/text extraction, task scorers (`Score`, `numeric`, `exact`,
`label`) and the per-item backend comparison. Imports nothing else from the package.
"""
