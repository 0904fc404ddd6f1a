"""The library's programs: fer-predict (and its Ray path), fer-serve and fer-export. Nothing in the
library imports them."""
