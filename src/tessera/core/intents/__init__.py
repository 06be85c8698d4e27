"""Intents: per-organization intent sets, classifiers trained on the embeddings, evaluation."""
