"""The vector store (ChromaDB) and the embedder behind memory and RAG."""
