from engine.cli import app

app(prog_name="claims")
