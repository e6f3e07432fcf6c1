"""Store adapters: each turns one store's table, index or query into Arrow streams (base.Source)."""
