"""The launcher's plan: what the inputs are, how big, and how they are cut into read units."""
