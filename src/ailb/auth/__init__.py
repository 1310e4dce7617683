"""Who is calling: API key identity (and, later, authentication and scopes)."""
