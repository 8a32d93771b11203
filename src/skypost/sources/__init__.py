"""Sources of posts other than direct submits: feeds (RSS/Atom) and their commands."""
