"""Faces: the FACS face model behind SynthFACS and its renderer (landmarks, AU-aware
attention maps and LBP join as their issues land)."""
