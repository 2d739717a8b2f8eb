"""Command modules of the striketracker CLI; each exposes ``register(app)``."""
