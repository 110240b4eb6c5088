from netobs_app.cli import entry

entry()
