"""Declaring what to evaluate: tasks, their data, row sampling, item ids, models and run settings.

Plain data and loaders; imports neither pytest nor torch.
"""
