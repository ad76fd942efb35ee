"""The scripted demo: the story, its report, scenarios, the local site it runs and the link scan."""
