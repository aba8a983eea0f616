"""Saga compensation."""
