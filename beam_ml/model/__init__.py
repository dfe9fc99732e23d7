"""Everything about a model artifact: what a SavedModel directory holds (signatures, assets), exporting one,
pushing it to a serving directory and finding the newest version."""
