"""Chaos test (random faults at the PDS, workers SIGKILLed) and the regression tests of what it found."""
