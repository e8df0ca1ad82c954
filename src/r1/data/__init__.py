"""Data: prompt templates, answer extraction, JSONL loading and tasks."""
