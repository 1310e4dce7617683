"""Usage records, budgets and the prices they are computed from."""
