"""The regulator's node: log ingest, its store, case files and the console's views."""
