"""Models of the shipped scenario suite, random-initialised at the documented shapes."""
