"""The platform's Lambda functions, one package each, and the code they share (shared/).

Every handler is imported through this package, so what is set here precedes
the functions' first import of pydantic: on its first model build pydantic looks
for plugins in the entry points of every installed distribution, reading each
one's metadata, about 25 ms of every cold start on the build machine
(docs/PERFORMANCE.md). The functions use no pydantic plugin; an operator who
adds one sets PYDANTIC_DISABLE_PLUGINS themselves, which this leaves alone.
"""

import os

os.environ.setdefault("PYDANTIC_DISABLE_PLUGINS", "__all__")
