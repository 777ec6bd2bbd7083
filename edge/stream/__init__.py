"""The token stream: the agent's tokens to local subscribers (the LLM process, the page) over a Unix socket or
loopback TCP. protocol: the wire format; handshake: who may subscribe; address: where; publisher and subscriber."""
