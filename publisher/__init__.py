"""publisher role of the moq stack."""
