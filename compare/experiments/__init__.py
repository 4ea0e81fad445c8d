"""One module per experiment; each is run through the compare CLI."""
