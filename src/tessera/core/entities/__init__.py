"""Entity extraction: general entities (spaCy) and clinical ones (vocabularies, patterns, ConText rules)."""
