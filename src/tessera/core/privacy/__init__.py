"""Privacy: PII detection, anonymisation operators and the pseudonym vault."""
