"""Pure draft-18 codec: bytes ↔ messages, headers and objects.  No I/O, no asyncio."""
