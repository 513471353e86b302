"""relay role of the moq stack."""
