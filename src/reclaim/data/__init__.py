"""Datasets: where examples come from, in one canonical JSONL form that later stages
(data selection, valuation) read and write."""
