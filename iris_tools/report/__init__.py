"""Evidence before moving users: version comparisons, shadow agreement, pictures."""
