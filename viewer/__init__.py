"""viewer role: moq-view (Python subscriber CLI); the web viewer comes later."""
