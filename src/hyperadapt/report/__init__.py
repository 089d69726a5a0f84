"""Tables and plots from results JSON."""
