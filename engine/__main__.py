from engine.cli.app import app

app(prog_name="claims")
