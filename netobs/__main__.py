from netobs.cli import entry

entry()
