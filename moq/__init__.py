"""moq: a Media-over-QUIC Transport (draft-ietf-moq-transport-18) stack.

`moq.wire` is the codec, `moq.session` the sans-IO state machine, `moq.transport` the
aioquic adapters, and `moq.client` the asyncio API that applications use.
"""

__version__ = "0.1.0"
