"""The WSGI entry point leaves the start-up heap out of the garbage collector's full collections."""

import gc


def test_the_start_up_heap_is_frozen():
    from console import wsgi

    try:
        frozen = wsgi.freeze_startup_heap()
        assert frozen > 10_000  # modules, URL patterns and models: far more than a request allocates
        assert gc.get_freeze_count() >= 10_000  # still frozen after the call returned
    finally:
        gc.unfreeze()
