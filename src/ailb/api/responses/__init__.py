"""The OpenAI Responses API face: /v1/responses, translated to the chat pipeline."""
