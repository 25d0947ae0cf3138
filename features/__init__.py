"""Pure domain logic of recqa: schemas, interactions, factorization, text, encoders, retrieval."""
