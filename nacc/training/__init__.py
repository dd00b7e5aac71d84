"""Offline fitting of the shipped models and priors (nothing here runs when coding)."""
