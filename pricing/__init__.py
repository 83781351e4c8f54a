"""Pricing and risk models: pure numpy/scipy, no Django. Prices in $/GPU-hr, time in years."""
