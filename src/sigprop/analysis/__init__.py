"""Analysis: the figure registry, aggregation over seeds, the checks of the paper's claims, the report."""
