"""Conversation memory (and the vector store RAG shares)."""
