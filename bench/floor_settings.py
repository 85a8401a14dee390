"""The project's settings with ``bench/floor_urls.py`` as the URLconf (``bench/bench_floor.py``)."""

from console.settings import *  # noqa: F403

ROOT_URLCONF = "floor_urls"
