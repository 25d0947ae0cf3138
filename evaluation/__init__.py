"""Offline evaluation of recommendations and QA retrieval, through the code the service serves with."""
