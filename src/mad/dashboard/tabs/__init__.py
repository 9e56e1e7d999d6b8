"""One module per dashboard tab; each has `render(settings, period)`."""
