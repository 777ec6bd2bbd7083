"""The agent's local web page: the live frame, its slice grid and stage times, the box's plots, questions to the LLM
(docs/web.md)."""
