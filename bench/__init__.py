"""`make bench`: the relay benchmark harness of issue 9 (not a test: it reports figures, asserts nothing).

Every role is a separate process: our relay (`python -m relay.app`) or the moq-rs relay
(bench/loadgen/moqrs_relay.py), a moq-rs publisher and moq-rs subscribers (bench/loadgen, run
under .venv-interop) so the load generators are Rust clients, not our Python stack.
"""
