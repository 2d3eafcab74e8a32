"""myproject's workflows on Chamberlain."""
