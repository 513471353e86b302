"""Publisher media tests: packaging units, and moq-publish through a relay (real processes)."""
