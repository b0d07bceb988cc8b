"""Agents that train on any textgym environment through its public API (see the agents issue)."""
