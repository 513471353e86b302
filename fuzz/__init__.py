"""Coverage-guided fuzzing of every decoder in moq/wire and of the sans-IO session.

`python -m fuzz list` names the targets; `python -m fuzz all --seconds 600` (what `make fuzz`
runs) fuzzes each in its own Atheris/libFuzzer process; tests/wire/test_fuzz_targets.py runs
every target for a bounded, seeded number of iterations inside `make test`.

The rule every target enforces: only the library's protocol errors (moq.errors.MoQError
subclasses, and NeedMoreData from the decoders that signal "feed more") may escape a
decoder, and the session never raises at all.  Targets also check that a decoder gives the
same result however its input is chunked, and that what it decodes re-encodes to the same
value; a failed check is an AssertionError, which the fuzzer reports like any crash.
"""
