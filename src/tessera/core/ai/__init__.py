"""The AI service: PII, NER and embeddings in process, or in a separate `tessera serve --role ai`."""
