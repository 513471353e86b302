"""viewer role of the moq stack."""
