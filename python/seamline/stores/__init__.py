"""Store adapters: one package per store type, each turning a table, index or query into Arrow streams
(`protocols.Source`) and, where the store can be written, applying repair plans."""
