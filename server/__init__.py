"""Where the world meets Chamberlain: the command line (and, next, webhooks, API and console)."""
