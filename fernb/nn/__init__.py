"""Neural-network building blocks of the five papers: capsules, backbones, attention."""
