"""Transforms written once as `Plan`s: raw lines -> typed events, events -> window aggregates."""
