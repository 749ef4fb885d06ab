"""API views, one module per resource: a few declarations each; rules live on the models."""
