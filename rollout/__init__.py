"""Rollouts: changes of PID-namespace mode and feature gates over a cluster's nodes, in waves."""
