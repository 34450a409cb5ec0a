"""Framework adapters for ``keyturn.verify``; import each by path (``keyturn.integrations.fastapi``).

Nothing here is re-exported at the package root, so ``import keyturn`` loads no web framework.
"""
