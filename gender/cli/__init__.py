"""The commands: train, predict, evaluate (map) and dataset, each a module with `main(argv=None)`.

Every way of starting a command imports this package first (the checkout's scripts, the installed
`gender-*` scripts, `python -m gender.cli.NAME`), so the one call below makes the process a quiet
command before any command module loads numpy or TensorFlow. The library (`import gender`,
`gender.predictor`, ...) leaves the environment alone.
"""

from gender.console import quiet

quiet()
