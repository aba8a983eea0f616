"""Tests that need no running service."""
