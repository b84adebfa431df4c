"""The bad-input corpus (see cases.py and REPORT.md)."""
