"""Authoring workflows: definitions, the DAG form, patterns, conversation steps, blobs."""
