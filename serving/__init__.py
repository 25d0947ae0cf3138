"""The online service (BentoML): reads the published Lance tables, never writes them."""
