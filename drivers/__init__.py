"""Drivers reach nodes: read their facts, apply kubelet flags, verify the PID-namespace mode."""
