"""Qualitative analysis: the study codebook, codings of answers, agreement between coders."""
