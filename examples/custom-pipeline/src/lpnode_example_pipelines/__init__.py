"""Example pipelines served by lpnode from outside its source tree."""
