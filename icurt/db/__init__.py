"""PostgreSQL: embedded server, connections, synthetic MIMIC-III, PhysioNet CSV loader, query stage."""
