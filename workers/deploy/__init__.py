"""Deployment manifests generated from the capability and engine registries.

``plan`` decides the worker fleets (one per capability queue, one per engine) and their grace
periods; ``manifests`` turns a plan into Kubernetes objects; ``render`` gathers the inputs
(imported steps, declared engines, settings) and writes or checks ``deploy/k8s``.
``canvasflow deploy render`` is the command (workflows/cli/deploy.py).
"""
