"""`python -m mad.cli`."""

from mad.cli import main

main()
