"""Authoring and running workflows."""
