"""Studies and countries: the study/country scope everything else is bounded by."""
