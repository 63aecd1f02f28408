"""Fault injection: real runners signalled or killed at every moment of a trial's life."""
