"""Analysis and figures shared by the chapters."""
