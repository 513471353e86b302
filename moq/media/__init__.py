"""Media formats carried over MoQ: LOC object properties and the MSF catalog (pure, no I/O)."""
